// Command ingest is chatpipe's HTTP API: it validates chat messages and runs them through Lua
// scripts on Valkey (rate limit, id, recent rings, flush stream). See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/telemetry"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if code := config.ExitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "ingest:", err)
		os.Exit(code)
	}
}

type settings struct {
	valkey          valkeyconn.Config
	keyPrefix       string
	addr            string
	authToken       string
	recentSize      int
	backlogCap      int
	clientMsgTTL    time.Duration
	rateLimit       int
	rateWindow      time.Duration
	rateAlgorithm   string
	mirrorInterval  time.Duration
	shutdownTimeout time.Duration
	pprofAddr       string
	batchSlots      int
	batchWait       time.Duration
	logLevel        string
	logFormat       string
}

func parse(args []string, getenv func(string) string, stdout io.Writer) (settings, error) {
	var s settings
	cs := config.New("ingest", "chatpipe ingest: the HTTP JSON API that accepts chat messages into Valkey\n(rate limit, ids, recent rings) and onto the flush streams that the flush workers persist.")
	cs.String(&s.valkey.Addr, "VALKEY_ADDR", "127.0.0.1:6379", "Valkey address, host:port", config.Addr)
	cs.String(&s.valkey.Username, "VALKEY_USERNAME", "", "Valkey ACL user name", nil)
	cs.Secret(&s.valkey.Password, "VALKEY_PASSWORD", "", "Valkey password", nil)
	cs.Duration(&s.valkey.Timeout, "VALKEY_TIMEOUT", 500*time.Millisecond, 10*time.Millisecond, time.Minute, "bound on every Valkey call; past it the request gets 503")
	config.ValkeyTLS(cs, &s.valkey)
	// 20µs: with 64 clients ingest spent 5% less CPU per message than with 0 (29.2 against
	// 30.8 µs) and no worse with 8; 50µs saved 8% at 64 clients but cost 8 clients 3% of their
	// rate (three alternating runs each, 60 000 requests, this 2-core machine).
	cs.Duration(&s.valkey.FlushDelay, "VALKEY_FLUSH_DELAY", 20*time.Microsecond, 0, time.Millisecond, "longest the Valkey writer waits to gather concurrent requests' calls into one write (0: write at once)")
	cs.String(&s.keyPrefix, "KEY_PREFIX", "", "prefix of every Valkey key", keyspace.ValidatePrefix)
	cs.String(&s.addr, "INGEST_ADDR", ":8080", "listen address of the API, /healthz, /readyz and /metrics", config.Addr)
	cs.Secret(&s.authToken, "INGEST_AUTH_TOKEN", "", "bearer token required on /v1/... (empty: no auth)", nil)
	cs.Int(&s.recentSize, "RECENT_SIZE", 500, 1, 100_000, "size of each recent-messages ring")
	cs.Int(&s.backlogCap, "INGEST_BACKLOG_CAP", 1_000_000, 1, 1_000_000_000, "most entries a flush stream may hold; past it messages get 503")
	cs.Int(&s.batchSlots, "INGEST_BATCH_CONCURRENCY", 8, 1, 1024, "most batch requests worked on at once; the others wait (bounds memory, not throughput: Valkey runs one script at a time)")
	cs.Duration(&s.batchWait, "INGEST_BATCH_WAIT", 5*time.Second, time.Millisecond, time.Minute, "longest a batch request waits for its turn before it gets 503")
	cs.Duration(&s.clientMsgTTL, "INGEST_CLIENT_MSG_TTL", 24*time.Hour, time.Second, 30*24*time.Hour, "how long a client_msg_id is remembered for retries")
	cs.Int(&s.rateLimit, "RATE_LIMIT", 30, 1, lua.MaxLimit, "messages per window and user, until set with PUT /v1/rate-limit")
	cs.Duration(&s.rateWindow, "RATE_WINDOW", 10*time.Second, time.Second, lua.MaxWindowSeconds*time.Second, "rate-limit window (whole seconds), until set with PUT /v1/rate-limit")
	cs.String(&s.rateAlgorithm, "RATE_ALGORITHM", "fixed", "fixed or gcra, until set with PUT /v1/rate-limit", func(v string) error {
		return lua.RateLimit{Limit: 1, WindowSeconds: 1, Algorithm: lua.Algorithm(v)}.Validate()
	})
	cs.Duration(&s.mirrorInterval, "INGEST_MIRROR_INTERVAL", 5*time.Second, 0, time.Hour, "how often the legacy flush lists are moved into the streams (0: never)")
	cs.Duration(&s.shutdownTimeout, "INGEST_SHUTDOWN_TIMEOUT", 10*time.Second, 0, 10*time.Minute, "how long in-flight requests may take to finish on SIGTERM")
	cs.String(&s.pprofAddr, "PPROF_ADDR", "", "listen address of net/http/pprof (empty: off; bind it to loopback)", config.OptionalAddr)
	cs.String(&s.logLevel, "LOG_LEVEL", "info", "debug, info, warn or error", telemetry.CheckLogLevel)
	cs.String(&s.logFormat, "LOG_FORMAT", "text", "text or json", telemetry.CheckLogFormat)
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return s, err
	}
	if s.rateWindow%time.Second != 0 {
		return s, &config.Error{Setting: "RATE_WINDOW", Problem: "must be whole seconds"}
	}
	return s, nil
}

// run wires the ingest service and blocks until ctx ends. Shutdown order: readiness false →
// in-flight requests finish (bounded by the shutdown timeout) → mirror loop stops → Valkey
// client closes.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	s, err := parse(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(stderr, s.logLevel, s.logFormat, "ingest")
	reg, metrics := telemetry.NewRegistry("ingest")
	keys, _ := keyspace.New(s.keyPrefix) // validated by parse

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.addr, err)
	}
	defer ln.Close()

	log.InfoContext(ctx, "starting", "version", telemetry.Version(), "addr", ln.Addr().String(), "valkey", s.valkey.Addr, "auth", s.authToken != "")
	client, err := valkeyconn.Connect(ctx, s.valkey, log)
	if err != nil {
		return err
	}
	defer client.Close()

	scripts, err := lua.New(client, lua.Config{
		Keys:         keys,
		RecentSize:   s.recentSize,
		BacklogCap:   int64(s.backlogCap),
		ClientMsgTTL: s.clientMsgTTL,
		DefaultRate:  lua.RateLimit{Limit: s.rateLimit, WindowSeconds: int(s.rateWindow / time.Second), Algorithm: lua.Algorithm(s.rateAlgorithm)},
		Timeout:      s.valkey.Timeout,
	})
	if err != nil {
		return err
	}
	if err := scripts.Load(ctx); err != nil {
		log.WarnContext(ctx, "loading scripts failed; they load on first use", "err", err)
	}
	srv, err := api.New(api.Config{
		Scripts:          scripts,
		Logger:           log,
		Registerer:       reg,
		Metrics:          metrics,
		AuthToken:        s.authToken,
		RecentSize:       s.recentSize,
		BatchConcurrency: s.batchSlots,
		BatchWait:        s.batchWait,
	})
	if err != nil {
		return err
	}
	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		srv.SetReady(false)
		log.InfoContext(ctx, "shutting down", "timeout", s.shutdownTimeout)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
		defer cancel()
		if err := httpSrv.Shutdown(sctx); err != nil {
			return fmt.Errorf("shutting down HTTP: %w", err)
		}
		return nil
	})
	g.Go(func() error { return telemetry.ServePprof(gctx, s.pprofAddr, log) })
	if s.mirrorInterval > 0 {
		g.Go(func() error { return mirrorLoop(gctx, scripts, s.mirrorInterval, log) })
	}
	log.InfoContext(ctx, "ready", "addr", ln.Addr().String())
	err = g.Wait()
	log.InfoContext(ctx, "stopped", "err", err)
	return err
}
