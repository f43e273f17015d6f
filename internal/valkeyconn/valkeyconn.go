// Package valkeyconn connects to Valkey for both binaries, waiting for it to come up.
package valkeyconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Config says how to reach Valkey.
type Config struct {
	// Addr is host:port. Required.
	Addr string
	// Username and Password authenticate (ACL user, or password only). Default: none.
	Username, Password string
	// Timeout bounds dialing and each read or write on a connection. Default 1s.
	Timeout time.Duration
	// TLS enables TLS; CAFile, when set, is the PEM file of the CAs to trust, and ServerName
	// overrides the name checked in the server's certificate.
	TLS        bool
	CAFile     string
	ServerName string
	// FlushDelay lets valkey-go's writer wait up to this long after a write to gather the calls
	// of concurrent requests into the next one: fewer write syscalls for a few µs of latency.
	FlushDelay time.Duration
}

// options builds valkey-go's options. The client-side cache is off: chatpipe reads rings that
// every replica writes, and scripts are not cacheable anyway.
func (c Config) options() (valkey.ClientOption, error) {
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	opt := valkey.ClientOption{
		InitAddress:      []string{c.Addr},
		Username:         c.Username,
		Password:         c.Password,
		DisableCache:     true,
		Dialer:           net.Dialer{Timeout: c.Timeout},
		ConnWriteTimeout: c.Timeout,
		MaxFlushDelay:    c.FlushDelay,
	}
	if c.TLS {
		host, _, _ := net.SplitHostPort(c.Addr)
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
		if c.ServerName != "" {
			tc.ServerName = c.ServerName
		}
		if c.CAFile != "" {
			pem, err := os.ReadFile(c.CAFile)
			if err != nil {
				return opt, fmt.Errorf("reading the Valkey CA file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return opt, errors.New("the Valkey CA file holds no PEM certificate")
			}
			tc.RootCAs = pool
		}
		opt.TLSConfig = tc
	}
	return opt, nil
}

// Connect returns a client once Valkey answers, retrying with capped, jittered backoff and a
// log line per failure until ctx ends. Errors that a retry cannot fix (bad credentials, bad TLS
// settings) are returned at once.
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (valkey.Client, error) {
	opt, err := cfg.options()
	if err != nil {
		return nil, err
	}
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		c, err := valkey.NewClient(opt)
		if err == nil {
			if attempt > 1 {
				log.InfoContext(ctx, "connected to valkey", "addr", cfg.Addr, "attempts", attempt)
			}
			return c, nil
		}
		if isPermanent(err) {
			return nil, fmt.Errorf("connecting to valkey at %s: %w", cfg.Addr, err)
		}
		log.WarnContext(ctx, "valkey not reachable yet, retrying", "addr", cfg.Addr, "attempt", attempt, "err", err)
		sleep := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to valkey at %s: %w (last error: %w)", cfg.Addr, ctx.Err(), err)
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// isPermanent reports errors Valkey answered with (WRONGPASS, NOAUTH, ...): retrying the same
// credentials will not help.
func isPermanent(err error) bool {
	_, ok := valkey.IsValkeyErr(err)
	return ok
}
