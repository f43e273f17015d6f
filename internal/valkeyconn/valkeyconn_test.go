package valkeyconn_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestPassword(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t, "--requirepass", "s3cret-pw")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	start := time.Now()
	_, err := valkeyconn.Connect(ctx, valkeyconn.Config{Addr: v.Addr, Password: "wrong"}, log)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("wrong password: err %v after %s, want a prompt error", err, time.Since(start))
	}
	if strings.Contains(err.Error(), "wrong") && strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error holds a password: %v", err)
	}
	c, err := valkeyconn.Connect(ctx, valkeyconn.Config{Addr: v.Addr, Password: "s3cret-pw"}, log)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestWaitsForValkey(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	v.Stop()
	done := make(chan error, 1)
	go func() {
		c, err := valkeyconn.Connect(context.Background(), valkeyconn.Config{Addr: v.Addr}, slog.New(slog.DiscardHandler))
		if err == nil {
			c.Close()
		}
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	v.Restart()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Connect did not return after Valkey came up")
	}
}

func TestTLSSettings(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := valkeyconn.Connect(ctx, valkeyconn.Config{Addr: "127.0.0.1:1", TLS: true, CAFile: "/nonexistent/ca.pem"}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "CA file") {
		t.Fatalf("err = %v, want a CA file error", err)
	}
}
