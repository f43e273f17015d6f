package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/telemetry"
)

func TestServePprof(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.DiscardHandler)
	if err := telemetry.ServePprof(t.Context(), "", log); err != nil {
		t.Fatalf("off: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- telemetry.ServePprof(ctx, addr, log) }()
	var body string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		res, err := http.Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body = string(b)
		break
	}
	if !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index: %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	if err := telemetry.ServePprof(t.Context(), "127.0.0.1:bad", log); err == nil {
		t.Fatal("a bad address was accepted")
	}
}
