package valkeyconn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
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

// TestTLS connects to a TLS-only Valkey with the CA file and server name settings; without the
// CA, or with a wrong name, the connection is refused.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir, "valkey.internal")
	v := testenv.StartValkeyTLS(t, certFile, keyFile, caFile)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := valkeyconn.Connect(ctx, valkeyconn.Config{Addr: v.Addr, TLS: true, CAFile: caFile, ServerName: "valkey.internal"}, log)
	if err != nil {
		t.Fatalf("TLS with the CA: %v", err)
	}
	if err := c.Do(ctx, c.B().Ping().Build()).Error(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	for name, cfg := range map[string]valkeyconn.Config{
		"no CA":      {Addr: v.Addr, TLS: true, ServerName: "valkey.internal"},
		"wrong name": {Addr: v.Addr, TLS: true, CAFile: caFile, ServerName: "other.internal"},
	} {
		short, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		c, err := valkeyconn.Connect(short, cfg, log)
		cancel()
		if err == nil {
			c.Close()
			t.Errorf("%s: connected, want a refusal", name)
		}
	}
}

// writeCerts makes a CA and a server certificate for name, as PEM files.
func writeCerts(t *testing.T, dir, name string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "chatpipe test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(file, typ string, b []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", der), write("server.key", "EC PRIVATE KEY", keyDER)
}
