package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/flush"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/telemetry"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

type workerSettings struct {
	common
	batchSize      int
	flushInterval  time.Duration
	minIdle        time.Duration
	maxDeliveries  int
	consumer       string
	group          string
	grace          time.Duration
	janitorIdle    time.Duration
	metricsAddr    string
	pprofAddr      string
	migrate        bool
	waitReplicas   int
	recentSize     int
	defaultChannel string
	ringTTL        time.Duration
	tailRetention  time.Duration
	pgStandbys     int
}

func parseWorker(args []string, getenv func(string) string, stdout io.Writer) (workerSettings, error) {
	var s workerSettings
	cs := config.New("flushworker run", "Consumes the flush streams in a consumer group and writes every entry to PostgreSQL\nexactly once; dead-letters what can never be written. Stops cleanly on SIGTERM/SIGINT.")
	s.addValkey(cs)
	s.addPostgres(cs)
	cs.Int(&s.batchSize, "FLUSH_BATCH_SIZE", 500, 1, 10_000, "most entries written in one batch")
	cs.Duration(&s.flushInterval, "FLUSH_INTERVAL", time.Second, time.Millisecond, time.Hour, "longest a batch may wait after its first entry (a batch is written as soon as nothing more waits: group commit)")
	cs.Duration(&s.minIdle, "FLUSH_MIN_IDLE", 30*time.Second, 100*time.Millisecond, 24*time.Hour, "idle time after which another replica may claim an entry")
	cs.Int(&s.maxDeliveries, "FLUSH_MAX_DELIVERIES", 5, 1, 1000, "deliveries after which an entry is dead-lettered as poison")
	cs.String(&s.consumer, "FLUSH_CONSUMER", hostname(), "this replica's consumer name, stable across restarts (default: the host name)", checkConsumer)
	cs.String(&s.group, "FLUSH_GROUP", "flushworkers", "consumer group of the flush workers", checkConsumer)
	cs.Duration(&s.grace, "FLUSH_GRACE", 10*time.Second, 0, 10*time.Minute, "time to write the batch in hand on SIGTERM")
	cs.Duration(&s.janitorIdle, "FLUSH_JANITOR_IDLE", time.Hour, time.Second, 30*24*time.Hour, "consumers idle this long with nothing pending are removed")
	cs.String(&s.metricsAddr, "FLUSH_METRICS_ADDR", ":9091", "listen address of /healthz, /readyz and /metrics", config.Addr)
	cs.String(&s.pprofAddr, "PPROF_ADDR", "", "listen address of net/http/pprof (empty: off; bind it to loopback)", config.OptionalAddr)
	cs.Int(&s.waitReplicas, "FLUSH_WAIT_REPLICAS", 0, 0, 100, "write only entries this many replicas hold (WAIT after each read; 0: off). With INGEST_DURABILITY=replica set it to the number of replicas the primary has (all of them: Sentinel may promote any), so that a failover cannot leave rows for entries the new primary never had")
	config.DefaultChannel(cs, &s.defaultChannel)
	config.RingTTL(cs, &s.ringTTL)
	cs.Int(&s.recentSize, "RECENT_SIZE", 500, 1, 100_000, "size of each private ring the workers repair in the partitioned layout (as ingest's)")
	cs.Duration(&s.tailRetention, "FLUSH_TAIL_RETENTION", 10*time.Second, 0, time.Hour, "keep acked entries this long before trimming them, so that ingest's live-tail clients resume after a lost connection (entries count toward INGEST_BACKLOG_CAP meanwhile; 0: trim at once)")
	cs.Int(&s.pgStandbys, "FLUSH_PG_STANDBYS", 0, 0, 32, "trim acked entries only once this many PostgreSQL standbys (pg_stat_replication) replayed their commits; set it when ingest's DATABASE_URL is a standby, so that history finds on it what the streams no longer hold (0: off; the role needs pg_monitor)")
	cs.Bool(&s.migrate, "FLUSH_MIGRATE", true, "apply schema migrations at start (under an advisory lock)")
	s.addLog(cs)
	cs.SetUsageLine("Usage: flushworker [run] [flags]")
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return s, err
	}
	return s, s.checkValkey()
}

// runWorker wires the worker: one consumer per flush stream, and the health and metrics
// server. Shutdown order: stop reading → write and ack the batches in hand (bounded by
// FLUSH_GRACE) → leave the group → close the HTTP server → close the pools.
func runWorker(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	s, err := parseWorker(args, getenv, stdout)
	if err != nil {
		return err
	}
	log := s.logger(stderr, "flushworker")
	reg, metricsHandler := telemetry.NewRegistry("flushworker")
	metrics, err := flush.NewMetrics(reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.metricsAddr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.metricsAddr, err)
	}
	defer ln.Close()
	log.InfoContext(ctx, "starting", "version", telemetry.Version(), "consumer", s.consumer, "group", s.group,
		"valkey", s.valkey.Where(), "postgres", pg.Redact(s.databaseURL), "metrics_addr", ln.Addr().String())

	client, err := s.connectValkey(ctx, log)
	if err != nil {
		return err
	}
	defer client.Close()
	if s.waitReplicas > 0 && s.valkey.Mode != valkeyconn.Cluster {
		// Sentinel promotes any replica, not the one that acknowledged: a worker that waited
		// for fewer than all of them can write a row for an entry the promoted one lacks, and
		// a send retried with its client_msg_id then becomes a second row (docs/ha.md).
		if info, err := valkeyconn.ReadInfo(ctx, client); err == nil && info.Replicas > s.waitReplicas {
			log.WarnContext(ctx, "FLUSH_WAIT_REPLICAS is below the primary's replicas: after a failover to a replica that lacks entries already written, a send retried with its client_msg_id can be stored twice; set it to the number of replicas",
				"wait_replicas", s.waitReplicas, "replicas", info.Replicas)
		}
	}
	vmon, err := valkeyconn.NewMonitor(client, s.valkey.AllowEviction, 5*time.Second, reg, log)
	if err != nil {
		return err
	}
	pool, err := s.connectPostgres(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	if s.migrate {
		if err := migrateWithRetry(ctx, pool, log); err != nil {
			return err
		}
	}
	sink := pg.New(pool)
	var standbys flush.Standbys
	if s.pgStandbys > 0 {
		sb := pg.NewStandbys(pool, s.pgStandbys)
		switch err := sb.Check(ctx); {
		case errors.Is(err, pg.ErrStandbysHidden), errors.Is(err, pg.ErrNotPrimary):
			return &config.Error{Setting: "FLUSH_PG_STANDBYS", Problem: err.Error()}
		case err != nil:
			log.WarnContext(ctx, "could not check the PostgreSQL standbys; trimming waits until they answer", "err", err)
		}
		standbys = sb
		log.InfoContext(ctx, "trimming waits for PostgreSQL standbys", "standbys", s.pgStandbys)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metricsHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { writeStatus(w, nil) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		cctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		err := client.Do(cctx, client.B().Ping().Build()).Error()
		if err == nil {
			err = vmon.Ready()
		}
		if err == nil {
			err = pool.Ping(cctx)
		}
		writeStatus(w, err)
	})
	httpSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	if key, value := s.layout.Record(); key != "" {
		if err := valkeyconn.CheckRecord(ctx, client, key, value, "KEY_PARTITIONS"); err != nil {
			return config.SetupErr(err)
		}
	}
	flushStreams := s.layout.FlushStreams()
	if s.valkey.Mode == valkeyconn.Cluster {
		// The single layout never ran on a cluster: no old streams to drain there (and their
		// dead-letter streams would sit in other slots than the streams).
		flushStreams = slices.DeleteFunc(flushStreams, func(fs keyspace.FlushStream) bool { return fs.Partition == "" })
	}
	monitor := streams.NewQueueMonitor(client, flushStreams, s.layout.QueueMonitorLease(), s.group, s.consumer, 5*time.Second, log)
	if err := reg.Register(monitor); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return monitor.Run(gctx) })
	g.Go(func() error { return vmon.Run(gctx) })
	g.Go(func() error { return telemetry.ServePprof(gctx, s.pprofAddr, log) })
	for _, fs := range flushStreams {
		cfg := flush.Config{
			Flush: fs, Group: s.group, Consumer: s.consumer,
			BatchSize: s.batchSize, FlushInterval: s.flushInterval, MinIdle: s.minIdle,
			MaxDeliveries: s.maxDeliveries, JanitorIdle: s.janitorIdle, Grace: s.grace,
			Timeout: s.valkey.Timeout, Sink: sink, Logger: log, Metrics: metrics, Replicas: s.waitReplicas,
			TailRetention: s.tailRetention, Standbys: standbys, DefaultChannel: s.defaultChannel,
		}
		if fs.Kind == message.Private {
			// Private rings: the workers clear deleted messages from them and repair what ingest
			// missed, with the store of the layout that wrote the stream (the single layout's
			// streams are drained under the partitioned one too).
			rings, err := store.Open(client, store.Config{Layout: fs.Layout, RecentSize: s.recentSize, Timeout: s.valkey.Timeout, RingTTL: s.ringTTL})
			if err != nil {
				return err
			}
			cfg.ForgetFunc = rings.ForgetPrivate
			if rings.KeepsRingsApart() {
				cfg.RepairFunc = rings.RepairRings
			}
		}
		co, err := flush.New(client, cfg)
		if err != nil {
			return err
		}
		g.Go(func() error { return co.Run(gctx) })
	}
	g.Go(func() error {
		if err := httpSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving metrics: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.grace+time.Second)
		defer cancel()
		return httpSrv.Shutdown(sctx)
	})
	log.InfoContext(ctx, "consuming", "layout", s.layout.Name(), "streams", len(flushStreams))
	err = g.Wait()
	log.InfoContext(context.WithoutCancel(ctx), "stopped", "err", err)
	return err
}

// migrateWithRetry applies migrations, waiting for PostgreSQL to come up.
func migrateWithRetry(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	for attempt := 1; ; attempt++ {
		n, err := pg.Migrate(ctx, pool, log)
		if err == nil {
			log.InfoContext(ctx, "schema up to date", "applied", n)
			return nil
		}
		if pg.Permanent(err) || ctx.Err() != nil {
			return err
		}
		log.WarnContext(ctx, "postgres not ready for migrations, retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(time.Duration(attempt)*500*time.Millisecond, 5*time.Second)):
		}
	}
}

func writeStatus(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, `{"status":"unavailable"}`)
		return
	}
	fmt.Fprintln(w, `{"status":"ok"}`)
}
