// Command ingest is chatpipe's HTTP API: it validates chat messages and runs them through Lua
// scripts on Valkey (rate limit, id, recent rings, flush stream). See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/auth"
	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/tail"
	"github.com/chatpipe/chatpipe/internal/telemetry"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
	"github.com/chatpipe/chatpipe/internal/version"
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
	layoutName      string
	partitions      int
	layout          keyspace.Layout
	addr            string
	tokens          tokenSource
	allowNoAuth     bool
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
	durability      string
	durableReplicas int
	durableTimeout  time.Duration
	ids             string
	databaseURL     string
	tailMax         int
	tailWrites      int
	coalesce        int
	defaultChannel  string
	ringTTL         time.Duration
	maxReactions    int
}

func parse(args []string, getenv func(string) string, stdout io.Writer) (settings, error) {
	var s settings
	cs := config.New("ingest", "chatpipe ingest: the HTTP JSON API that accepts chat messages into Valkey\n(rate limit, ids, recent rings) and onto the flush streams that the flush workers persist.")
	config.Valkey(cs, &s.valkey)
	cs.Duration(&s.valkey.Timeout, "VALKEY_TIMEOUT", 500*time.Millisecond, 10*time.Millisecond, time.Minute, "bound on every Valkey call; past it the request gets 503")
	// 20µs: with 64 clients ingest spent 5% less CPU per message than with 0 (29.2 against
	// 30.8 µs) and no worse with 8; 50µs saved 8% at 64 clients but cost 8 clients 3% of their
	// rate (three alternating runs each, 60 000 requests, this 2-core machine).
	cs.Duration(&s.valkey.FlushDelay, "VALKEY_FLUSH_DELAY", 20*time.Microsecond, 0, time.Millisecond, "longest the Valkey writer waits to gather concurrent requests' calls into one write (0: write at once)")
	cs.String(&s.keyPrefix, "KEY_PREFIX", "", "prefix of every Valkey key", keyspace.ValidatePrefix)
	config.Layout(cs, &s.layoutName, &s.partitions)
	config.DefaultChannel(cs, &s.defaultChannel)
	config.RingTTL(cs, &s.ringTTL)
	cs.Int(&s.maxReactions, "REACTIONS_MAX_DISTINCT", 20, 1, store.MaxReactionsLimit, "most distinct emoji on one message; one more answers 409 too_many_reactions (a message's counts travel whole with each reaction)")
	cs.String(&s.addr, "INGEST_ADDR", ":8080", "listen address of the API, /healthz, /readyz and /metrics", config.Addr)
	cs.Secret(&s.tokens.one, "INGEST_AUTH_TOKEN", "", "bearer token required on /v1/..., for reads and writes (empty, and INGEST_AUTH_TOKENS too: no auth, on a loopback INGEST_ADDR only)", func(v string) error { _, err := auth.One(v); return err })
	cs.Secret(&s.tokens.list, "INGEST_AUTH_TOKENS", "", "bearer tokens, comma-separated, each prefixed read: (GET endpoints), write: (POST, PUT, PATCH, DELETE) or bare (both); with INGEST_AUTH_TOKEN, any of them is let in; the _FILE form is read again on SIGHUP", func(v string) error { _, err := auth.Parse(v); return err })
	cs.Bool(&s.allowNoAuth, "INGEST_ALLOW_NO_AUTH", false, "serve /v1/... without a token on an INGEST_ADDR beyond loopback (a warning, and chatpipe_ingest_open_api 1): anyone who reaches it reads every message and posts as anyone")
	cs.String(&s.durability, "INGEST_DURABILITY", string(store.DurableNone), "none (202 once the script ran on the primary), replica (also WAIT for replicas) or fsync (also WAITAOF: fsynced to the primary's AOF)", oneOf(store.DurableNone, store.DurableReplica, store.DurableFsync))
	cs.Int(&s.durableReplicas, "INGEST_DURABILITY_REPLICAS", 1, 1, 100, "replicas that must acknowledge each write under INGEST_DURABILITY=replica")
	cs.Duration(&s.durableTimeout, "INGEST_DURABILITY_TIMEOUT", 200*time.Millisecond, time.Millisecond, time.Minute, "longest a request waits for durability; then 503 not_durable with the cache id")
	cs.String(&s.ids, "INGEST_IDS", "auto", "counter (1, 2, 3, … as the list-based cache), clock (counter floored by the server's clock: never given twice across a failover) or auto (clock in sentinel mode, else counter)", oneOf(store.IDs("auto"), store.CounterIDs, store.ClockIDs))
	cs.Secret(&s.databaseURL, "DATABASE_URL", "", "PostgreSQL URL or DSN for the history endpoints, read only (grants.sql); empty: they answer 503 history_unavailable", optionalDSN)
	cs.Int(&s.tailMax, "INGEST_TAIL_MAX", 1000, 1, 1_000_000, "most live-tail (SSE) subscribers of this replica; past it they get 503")
	cs.Int(&s.tailWrites, "INGEST_TAIL_WRITES", 50_000, 0, 10_000_000, "writes a second the live-tail streams of this replica make together before events to busy streams are grouped (each stream writes at most every subscribers/this); a lone event is never held (0: no pacing)")
	cs.Int(&s.recentSize, "RECENT_SIZE", 500, 1, 100_000, "size of each recent-messages ring")
	cs.Int(&s.backlogCap, "INGEST_BACKLOG_CAP", 1_000_000, 1, 1_000_000_000, "most entries a flush stream may hold; past it messages get 503")
	cs.Int(&s.coalesce, "INGEST_COALESCE", 1, 0, 64, "script calls of single messages (and of reactions) under way at once; those that arrive meanwhile go together in the next call, each still judged on its own (0: a call each)")
	cs.Int(&s.batchSlots, "INGEST_BATCH_CONCURRENCY", 8, 1, 1024, "most batch requests worked on at once; the others wait (bounds memory, not throughput: Valkey runs one script at a time)")
	cs.Duration(&s.batchWait, "INGEST_BATCH_WAIT", 5*time.Second, time.Millisecond, time.Minute, "longest a batch request waits for its turn before it gets 503")
	cs.Duration(&s.clientMsgTTL, "INGEST_CLIENT_MSG_TTL", 24*time.Hour, time.Second, 30*24*time.Hour, "how long a client_msg_id is remembered for retries")
	cs.Int(&s.rateLimit, "RATE_LIMIT", 30, 1, store.MaxLimit, "messages per window and user, until set with PUT /v1/rate-limit")
	cs.Duration(&s.rateWindow, "RATE_WINDOW", 10*time.Second, time.Second, store.MaxWindowSeconds*time.Second, "rate-limit window (whole seconds), until set with PUT /v1/rate-limit")
	cs.String(&s.rateAlgorithm, "RATE_ALGORITHM", "fixed", "fixed or gcra, until set with PUT /v1/rate-limit", func(v string) error {
		return store.RateLimit{Limit: 1, WindowSeconds: 1, Algorithm: store.Algorithm(v)}.Validate()
	})
	cs.Duration(&s.mirrorInterval, "INGEST_MIRROR_INTERVAL", 5*time.Second, 0, time.Hour, "how often the legacy flush lists are moved into the streams (0: never)")
	cs.Duration(&s.shutdownTimeout, "INGEST_SHUTDOWN_TIMEOUT", 10*time.Second, 0, 10*time.Minute, "how long in-flight requests may take to finish on SIGTERM")
	cs.String(&s.pprofAddr, "PPROF_ADDR", "", "listen address of net/http/pprof (empty: off; bind it to loopback)", config.OptionalAddr)
	cs.String(&s.logLevel, "LOG_LEVEL", "info", "debug, info, warn or error", telemetry.CheckLogLevel)
	cs.String(&s.logFormat, "LOG_FORMAT", "text", "text or json", telemetry.CheckLogFormat)
	err := cs.Parse(args, getenv, stdout)
	if err != nil {
		return s, err
	}
	if s.rateWindow%time.Second != 0 {
		return s, &config.Error{Setting: "RATE_WINDOW", Problem: "must be whole seconds"}
	}
	if s.layout, err = config.NewLayout(s.layoutName, s.keyPrefix, s.partitions, s.defaultChannel, &s.valkey); err != nil {
		return s, err
	}
	if s.ids == "auto" {
		s.ids = string(store.CounterIDs)
		if s.valkey.Mode == valkeyconn.Sentinel {
			s.ids = string(store.ClockIDs)
		}
	}
	if err := config.CheckValkey(s.valkey); err != nil {
		return s, err
	}
	s.tokens.oneFile, s.tokens.listFile = cs.File("INGEST_AUTH_TOKEN"), cs.File("INGEST_AUTH_TOKENS")
	if s.tokens.one == "" && s.tokens.list == "" && !config.Loopback(s.addr) && !s.allowNoAuth {
		return s, &config.Error{Setting: "INGEST_AUTH_TOKEN", Problem: fmt.Sprintf("INGEST_ADDR %s is reachable beyond loopback: set INGEST_AUTH_TOKEN (or INGEST_AUTH_TOKENS, or a _FILE form), bind INGEST_ADDR to 127.0.0.1, or set INGEST_ALLOW_NO_AUTH=true", s.addr)}
	}
	return s, nil
}

func optionalDSN(v string) error {
	if v == "" {
		return nil
	}
	return pg.CheckDSN(v)
}

// oneOf checks that a value is one of the given words.
func oneOf[T ~string](allowed ...T) func(string) error {
	return func(v string) error {
		for _, a := range allowed {
			if string(a) == v {
				return nil
			}
		}
		words := make([]string, len(allowed))
		for i, a := range allowed {
			words[i] = string(a)
		}
		return fmt.Errorf("must be one of %s", strings.Join(words, ", "))
	}
}

// run wires the ingest service and blocks until ctx ends. Shutdown order: readiness false →
// in-flight requests finish (bounded by the shutdown timeout) → mirror loop stops → Valkey
// client closes.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if version.Asked(args) {
		_, err := fmt.Fprintln(stdout, version.String("ingest"))
		return err
	}
	s, err := parse(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(stderr, s.logLevel, s.logFormat, "ingest")
	reg, metrics := telemetry.NewRegistry("ingest")

	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.addr, err)
	}
	defer ln.Close()

	log.InfoContext(ctx, "starting", "version", telemetry.Version(), "addr", ln.Addr().String(), "valkey", s.valkey.Where(),
		"durability", s.durability, "ids", s.ids, "layout", s.layout.Name())
	tokens, err := startAuth(ctx, s, reg, log)
	if err != nil {
		return err
	}
	defer tokens.stop()
	client, err := valkeyconn.Connect(ctx, s.valkey, log)
	if err != nil {
		return config.SetupErr(err)
	}
	defer client.Close()
	if s.durability == string(store.DurableFsync) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := valkeyconn.CheckFsync(cctx, client)
		cancel()
		if err != nil {
			return config.SetupErr(err)
		}
	}
	monitor, err := valkeyconn.NewMonitor(client, s.valkey.AllowEviction, 5*time.Second, reg, log)
	if err != nil {
		return err
	}

	lcfg := store.Config{
		RecentSize:      s.recentSize,
		BacklogCap:      int64(s.backlogCap),
		ClientMsgTTL:    s.clientMsgTTL,
		DefaultRate:     store.RateLimit{Limit: s.rateLimit, WindowSeconds: int(s.rateWindow / time.Second), Algorithm: store.Algorithm(s.rateAlgorithm)},
		Timeout:         s.valkey.Timeout,
		Durability:      store.Durability(s.durability),
		DurableReplicas: s.durableReplicas,
		DurableTimeout:  s.durableTimeout,
		IDs:             store.IDs(s.ids),
		Layout:          s.layout,
		RingTTL:         s.ringTTL,
		MaxReactions:    s.maxReactions,
	}
	if key, value := s.layout.Record(); key != "" {
		if err := valkeyconn.CheckRecord(ctx, client, key, value, "KEY_PARTITIONS"); err != nil {
			return config.SetupErr(err)
		}
	}
	opened, err := store.Open(client, lcfg)
	if err != nil {
		return err
	}
	st := store.Coalesce(opened, s.coalesce)
	if err := st.Load(ctx); err != nil {
		log.WarnContext(ctx, "loading scripts failed; they load on first use", "err", err)
	}
	var db *pg.History
	if s.databaseURL != "" {
		// The pool connects lazily: PostgreSQL down at start only makes history answer 503.
		pool, err := pg.ConnectAs(ctx, s.databaseURL, "chatpipe-ingest", 4)
		if err != nil {
			return config.SetupErr(err)
		}
		defer pool.Close()
		db = pg.NewHistory(pool)
		log.InfoContext(ctx, "history enabled", "postgres", pg.Redact(s.databaseURL))
	} else {
		log.InfoContext(ctx, "history disabled: no DATABASE_URL; the history endpoints answer 503")
	}
	hist, err := history.New(history.Config{Valkey: client, Layout: s.layout, DB: db, Timeout: 2 * s.valkey.Timeout, Registerer: reg, Logger: log, DefaultChannel: s.defaultChannel,
		ReactionsTTL: s.ringTTL})
	if err != nil {
		return err
	}
	tails, err := tail.New(tail.Config{Valkey: client, Layout: s.layout, MaxSubscribers: s.tailMax, WriteBudget: s.tailWrites, Timeout: s.valkey.Timeout, Logger: log, Registerer: reg, DefaultChannel: s.defaultChannel})
	if err != nil {
		return err
	}
	srv, err := api.New(api.Config{
		History:          hist,
		Tail:             tails,
		Store:            st,
		Logger:           log,
		Registerer:       reg,
		Metrics:          metrics,
		Tokens:           tokens.keyring,
		RecentSize:       s.recentSize,
		BatchConcurrency: s.batchSlots,
		BatchWait:        s.batchWait,
		ReadyFunc:        monitor.Ready,
		DefaultChannel:   s.defaultChannel,
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
	// The live tail ends its streams when shutdown begins: Shutdown waits for every open
	// request, and an SSE response never ends by itself.
	tctx, stopTails := context.WithCancel(context.WithoutCancel(gctx))
	defer stopTails()
	httpSrv.RegisterOnShutdown(stopTails)
	g.Go(func() error { return tails.Run(tctx) })
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
	g.Go(func() error { tokens.reloadOnSIGHUP(gctx); return nil })
	g.Go(func() error { return monitor.Run(gctx) })
	// The legacy lists of the list-based cache are mirrored into the single layout's streams;
	// a partitioned deployment was never one.
	if list, _ := s.layout.Legacy(message.Public); s.mirrorInterval > 0 && list != "" {
		g.Go(func() error { return mirrorLoop(gctx, opened, s.mirrorInterval, log) })
	}
	if db != nil {
		g.Go(func() error { warnOnStandby(gctx, db, log); return nil })
	}
	log.InfoContext(ctx, "ready", "addr", ln.Addr().String())
	err = g.Wait()
	log.InfoContext(ctx, "stopped", "err", err)
	return err
}

// warnOnStandby warns once PostgreSQL answers, if history reads a standby: whole history then
// needs the workers' FLUSH_PG_STANDBYS. Off the start-up path, since PostgreSQL may be down.
func warnOnStandby(ctx context.Context, db *pg.History, log *slog.Logger) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		standby, err := db.Standby(cctx)
		cancel()
		if err == nil {
			if standby {
				log.WarnContext(ctx, "history reads a PostgreSQL standby: run the workers with FLUSH_PG_STANDBYS set to the number of standbys history reads, or history misses messages trimmed from the streams before the standby replayed them")
			}
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Second):
		}
	}
}
