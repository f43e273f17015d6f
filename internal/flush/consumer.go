// Package flush is the flush worker's engine, the one place that joins a Valkey stream
// (package streams) to PostgreSQL (package pg): consumers that read a flush stream in a
// consumer group (XREADGROUP), write batches through a Sink (PostgreSQL), ack them (XACK),
// dead-letter what can never be written, reclaim what dead replicas left (XAUTOCLAIM), trim
// what every group has acked and clean up consumers that are gone.
//
// Delivery is at least once; the Sink's idempotent write on cache_id makes it exactly once.
// An entry leaves the stream's pending list only by XACK after its row is committed, or by the
// atomic dead-letter step, so a crash at any point leaves it pending for a later owner.
package flush

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/backoff"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// Sink persists decoded records idempotently. *pg.Store is the one in use.
type Sink interface {
	// Persist writes recs of one kind. It returns the records refused for their data in
	// Result.Rejected, and an error only when nothing can be concluded (transient): the whole
	// batch is then retried.
	Persist(ctx context.Context, kind message.Kind, recs []message.Record) (pg.Result, error)
}

// Config configures a Consumer. Zero values take the defaults given.
type Config struct {
	// Kind selects the flush stream. Default: public messages.
	Kind message.Kind
	// Keys builds the stream names. Default: no prefix.
	Keys keyspace.Keys
	// Flush, when its Stream is set, names the stream to consume instead of Keys and Kind (a
	// partition's stream in the partitioned layout); its Kind replaces Kind.
	Flush keyspace.FlushStream
	// Group is the consumer group. Default "flushworkers".
	Group string
	// Consumer is this replica's stable name. Required.
	Consumer string
	// BatchSize is the most entries read and written at once. Default 500.
	BatchSize int
	// FlushInterval is the longest a batch waits after its first entry. Default 1s.
	FlushInterval time.Duration
	// Block is the longest one XREADGROUP blocks. Default 1s (less when a batch is due).
	Block time.Duration
	// MinIdle is how long an entry must be idle before another consumer may claim it.
	// Default 30s. Entries this consumer holds are touched (XCLAIM JUSTID) every MinIdle/3,
	// so a long flush interval or a long retry does not let them be claimed.
	MinIdle time.Duration
	// MaxDeliveries: an entry delivered more often is dead-lettered as poison. Default 5.
	MaxDeliveries int
	// ReclaimInterval is how often idle entries are claimed. Default MinIdle/2.
	ReclaimInterval time.Duration
	// TrimInterval is how often the stream is trimmed below what every group acked. Default 1s.
	TrimInterval time.Duration
	// JanitorIdle: consumers idle longer, with nothing pending, are deleted. Default 1h.
	JanitorIdle time.Duration
	// Grace bounds the final flush on shutdown. Default 10s.
	Grace time.Duration
	// Timeout bounds each Valkey call. Default 5s.
	Timeout time.Duration
	// Sink persists records. Required.
	Sink Sink
	// Logger logs. Default: discard.
	Logger *slog.Logger
	// Metrics, when set, are updated.
	Metrics *Metrics
	// NowFunc is the clock for end-to-end latency. Default time.Now.
	NowFunc func() time.Time
	// Replicas, when above 0, makes the consumer write only entries that this many replicas
	// hold: each read is followed by a WAIT on its connection, and entries read while too
	// few replicas acknowledged stay pending until they do. A failover can then not leave a
	// row in PostgreSQL for an entry the promoted replica never had (whose id and
	// client_msg_id it would give again). Default 0: write what the primary has.
	Replicas int
	// ReplicaTimeout bounds each WAIT. Default 1s.
	ReplicaTimeout time.Duration
	// RepairFunc, when set, gets the messages of each written batch with their ring entries as
	// on the stream, before the batch is acked: the partitioned layout writes private rings
	// after the enqueue, and repairs them here (store.Store.RepairRings).
	RepairFunc func(ctx context.Context, recs []message.Record, entries []string) error
	// ForgetFunc, when set, gets the private messages that deletions removed, with their users,
	// once PostgreSQL applied the deletions and before the ack: their users' rings are cleared
	// of them, whether or not ingest knew the users when it took the deletion.
	ForgetFunc func(ctx context.Context, recs []message.Record) error
	// DefaultChannel is the channel of public messages that name none (written before
	// channels): their rows get it.
	DefaultChannel string
	// TailRetention keeps acked entries this long before trimming them, so that a live-tail
	// client that lost its connection resumes from the stream (ingest's SSE endpoints). It never
	// keeps an unacked entry shorter. 0: trim everything acked.
	TailRetention time.Duration
	// Standbys, when set, holds trimming until enough PostgreSQL standbys have replayed the
	// commits of what is trimmed, so that history read from a standby finds every entry the
	// stream no longer holds (*pg.Standbys).
	Standbys Standbys
}

// Standbys tells how far the PostgreSQL standbys that history reads have replayed.
type Standbys interface {
	// Want is how many standbys must replay a commit.
	Want() int
	// Position is the primary's WAL position now: every commit before the call is at or below.
	Position(ctx context.Context) (uint64, error)
	// Replayed is how far Want standbys have replayed (LSN 0 while fewer report).
	Replayed(ctx context.Context) (pg.Replay, error)
}

func (c *Config) setDefaults() error {
	c.DefaultChannel = cmp.Or(c.DefaultChannel, message.DefaultChannel)
	if c.Flush.Stream == "" {
		c.Flush = keyspace.FlushStream{Kind: c.Kind, Stream: c.Keys.Stream(c.Kind), DeadLetter: c.Keys.DeadLetter(c.Kind)}
	}
	c.Kind = c.Flush.Kind
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Group == "" {
		c.Group = "flushworkers"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 500
	}
	def(&c.FlushInterval, time.Second)
	def(&c.Block, time.Second)
	def(&c.MinIdle, 30*time.Second)
	if c.MaxDeliveries == 0 {
		c.MaxDeliveries = 5
	}
	def(&c.ReclaimInterval, c.MinIdle/2)
	def(&c.TrimInterval, time.Second)
	def(&c.JanitorIdle, time.Hour)
	def(&c.Grace, 10*time.Second)
	def(&c.Timeout, 5*time.Second)
	def(&c.ReplicaTimeout, time.Second)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	switch {
	case c.Consumer == "":
		return errors.New("streams: Consumer is required")
	case c.Sink == nil:
		return errors.New("streams: Sink is required")
	case c.BatchSize < 1:
		return errors.New("streams: BatchSize must be at least 1")
	case c.MaxDeliveries < 1:
		return errors.New("streams: MaxDeliveries must be at least 1")
	case c.FlushInterval < 0, c.Block < time.Millisecond, c.MinIdle < 3*time.Millisecond, c.ReclaimInterval < 0:
		return errors.New("streams: durations must be positive")
	}
	return nil
}

// Consumer consumes one flush stream.
type Consumer struct {
	g      *streams.Group
	cfg    Config
	stream string
	kind   string // the entry kind of this stream
	log    *slog.Logger
	m      *Metrics
	// ackInFlight is closed when the XACK of the last batch written from a backlog is done:
	// that ack travels while the next batch is written. Only Run's goroutine touches it.
	ackInFlight chan struct{}
	// held are the trim points waiting for the standbys (Config.Standbys), oldest first. Only
	// Run's goroutine touches it.
	held     []trimPoint
	heldFull bool
	// unindexedTo is the last trim point whose entries left their backlog indexes
	// (unindexBelow). Only Run's goroutine touches it.
	unindexedTo string
}

// entry is one stream entry as read.
type entry = streams.Entry

// New returns a consumer of cfg.Kind's flush stream.
func New(c valkey.Client, cfg Config) (*Consumer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("stream", cfg.Kind.String())
	if cfg.Flush.Partition != "" {
		log = log.With("partition", cfg.Flush.Partition)
	}
	g, err := streams.NewGroup(c, streams.GroupConfig{
		Stream: cfg.Flush.Stream, DeadLetter: cfg.Flush.DeadLetter,
		Group: cfg.Group, Consumer: cfg.Consumer, Timeout: cfg.Timeout,
		Replicas: cfg.Replicas, ReplicaTimeout: cfg.ReplicaTimeout, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	co := &Consumer{
		g:      g,
		cfg:    cfg,
		stream: cfg.Flush.Stream,
		kind:   cfg.Kind.String(),
		log:    log,
		m:      cfg.Metrics,
	}
	if co.m != nil {
		co.m.init(co.kind)
		co.m.trimHeld.set(co.stream, co.kind, time.Time{})
	}
	return co, nil
}

// Run consumes until ctx ends, then writes and acks the batch in hand within the grace period,
// and deletes this consumer from the group when nothing is pending for it. Valkey and Postgres
// outages are waited out, not returned.
//
// Shutdown order: stop reading → write the batch in hand → ack → leave the group.
func (co *Consumer) Run(ctx context.Context) error {
	if err := co.ensureGroup(ctx); err != nil {
		return err
	}
	co.drainOwn(ctx)
	var (
		buf         []entry
		first       time.Time
		touched     time.Time
		nextReclaim = time.Now()
		nextTrim    = time.Now()
		nextJanitor = time.Now().Add(co.cfg.JanitorIdle / 10)
		failures    int
	)
	for ctx.Err() == nil {
		now := time.Now()
		if !now.Before(nextReclaim) {
			co.reclaim(ctx)
			nextReclaim = time.Now().Add(co.cfg.ReclaimInterval)
		}
		if !now.Before(nextTrim) {
			co.trim(ctx)
			nextTrim = time.Now().Add(co.cfg.TrimInterval)
		}
		if !now.Before(nextJanitor) {
			co.janitor(ctx)
			nextJanitor = time.Now().Add(co.cfg.JanitorIdle / 10)
		}
		wait := co.cfg.Block
		if len(buf) > 0 {
			wait = min(wait, time.Until(first.Add(co.cfg.FlushInterval)))
		}
		if co.g.Unconfirmed() {
			// Write what was confirmed, then the pending entries once replicas hold them.
			if len(buf) > 0 {
				_ = co.process(ctx, buf, false)
				buf = nil
			}
			co.drainOwn(ctx)
			continue
		}
		// COUNT must stay above 0: XREADGROUP … COUNT 0 returns every entry there is.
		drained := false // the last read took everything waiting: write now (group commit)
		if wait >= time.Millisecond && len(buf) < co.cfg.BatchSize {
			want := co.cfg.BatchSize - len(buf)
			got, err := co.read(ctx, ">", want, wait)
			if streams.IsNoGroup(err) {
				// The stream or the group is gone: Valkey lost its data (restarted without
				// persistence) or someone deleted the key. Start over on the new stream.
				co.log.ErrorContext(ctx, "the consumer group is gone; creating it again", "group", co.cfg.Group)
				buf = nil
				if err := co.ensureGroup(ctx); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				failures++
				if errors.Is(err, streams.ErrNotReplicated) {
					co.log.WarnContext(ctx, "read entries are not on enough replicas yet; they stay pending", "replicas", co.cfg.Replicas, "failures", failures)
					backoff.Wait(ctx, failures)
					continue
				}
				co.log.WarnContext(ctx, "reading the flush stream failed", "err", err, "failures", failures)
				backoff.Wait(ctx, failures)
				continue
			}
			failures = 0
			if len(buf) == 0 && len(got) > 0 {
				first, touched = time.Now(), time.Now()
			}
			buf = append(buf, got...)
			drained = len(got) > 0 && len(got) < want
		}
		switch {
		case len(buf) == 0:
		case len(buf) >= co.cfg.BatchSize || time.Since(first) >= co.cfg.FlushInterval || drained:
			// Group commit: a batch is written as soon as nothing more waits in the stream (and
			// the previous write is done: writes take turns), so at light load an entry waits for
			// no timer, and under load batches grow by themselves while a write is in flight.
			// FlushInterval only bounds how long a batch may wait (a read that keeps returning).
			// A full batch means a backlog: read the next one while this one is written, so
			// that Valkey and PostgreSQL round trips overlap instead of taking turns.
			var next []entry
			readDone := make(chan struct{})
			if len(buf) >= co.cfg.BatchSize {
				go func() {
					defer close(readDone)
					var err error
					if next, err = co.read(ctx, ">", co.cfg.BatchSize, 0); err != nil {
						co.log.WarnContext(ctx, "reading ahead failed", "err", err)
					}
				}()
			} else {
				close(readDone)
			}
			err := co.process(ctx, buf, len(buf) >= co.cfg.BatchSize)
			<-readDone
			if err != nil && ctx.Err() != nil {
				buf = append(buf, next...) // shutting down mid-retry: the grace period below tries again
				continue
			}
			buf = next
			if len(buf) > 0 {
				first, touched = time.Now(), time.Now()
			}
		case time.Since(touched) >= co.cfg.MinIdle/3:
			co.touch(ctx, buf)
			touched = time.Now()
		}
	}
	co.waitAck()
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), co.cfg.Grace)
	defer cancel()
	if len(buf) > 0 {
		co.log.InfoContext(gctx, "writing the batch in hand before stopping", "entries", len(buf))
		if err := co.process(gctx, buf, false); err != nil {
			co.log.WarnContext(gctx, "the batch in hand stays pending for the next owner", "entries", len(buf), "err", err)
		}
	}
	co.leave(gctx)
	return nil
}

// ensureGroup creates the group at the stream's start (group.lua, which runs while Valkey is
// full too). An existing group is fine.
func (co *Consumer) ensureGroup(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := co.g.Create(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("creating group %s on %s: %w", co.cfg.Group, co.stream, ctx.Err())
		}
		co.log.WarnContext(ctx, "creating the consumer group failed, retrying", "group", co.cfg.Group, "err", err)
		backoff.Wait(ctx, attempt)
	}
}

// read reads entries (streams.Group.Read) and counts them.
func (co *Consumer) read(ctx context.Context, id string, count int, block time.Duration) ([]entry, error) {
	out, err := co.g.Read(ctx, id, count, block)
	if co.m != nil && len(out) > 0 {
		co.m.read.WithLabelValues(co.kind).Add(float64(len(out)))
	}
	return out, err
}
