// Package streams is the flush worker's engine: consumers that read a flush stream in a
// consumer group (XREADGROUP), write batches through a Sink (PostgreSQL), ack them (XACK),
// dead-letter what can never be written, reclaim what dead replicas left (XAUTOCLAIM), trim
// what every group has acked and clean up consumers that are gone.
//
// Delivery is at least once; the Sink's idempotent write on cache_id makes it exactly once.
// An entry leaves the stream's pending list only by XACK after its row is committed, or by the
// atomic dead-letter step, so a crash at any point leaves it pending for a later owner.
package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
)

// Sink persists decoded records idempotently. *pg.Store is the one in use.
type Sink interface {
	// Persist writes recs of one kind. It returns the records refused for their data in
	// Result.Rejected, and an error only when nothing can be concluded (transient): the whole
	// batch is then retried.
	Persist(ctx context.Context, kind keyspace.Kind, recs []message.Record) (pg.Result, error)
}

// Config configures a Consumer. Zero values take the defaults given.
type Config struct {
	// Kind selects the flush stream. Default: public messages.
	Kind keyspace.Kind
	// Keys builds the stream names. Default: no prefix.
	Keys keyspace.Keys
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
}

func (c *Config) setDefaults() error {
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
	c      valkey.Client
	cfg    Config
	stream string
	dead   string
	kind   string // the entry kind of this stream
	log    *slog.Logger
	m      *Metrics
	// ackInFlight is closed when the XACK of the last batch written from a backlog is done:
	// that ack travels while the next batch is written. Only Run's goroutine touches it.
	ackInFlight chan struct{}
	// unconfirmed is set when a read moved entries into this consumer's pending list that too
	// few replicas held: they are read again from the pending list once replicas catch up.
	unconfirmed atomic.Bool
}

// errNotReplicated: a read's entries are not yet on enough replicas (Config.Replicas).
var errNotReplicated = errors.New("entries not yet on enough replicas")

// entry is one stream entry as read; fields is nil for an entry deleted from the stream while
// it was pending.
type entry struct {
	id     string
	fields map[string]string
}

// New returns a consumer of cfg.Kind's flush stream.
func New(c valkey.Client, cfg Config) (*Consumer, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	co := &Consumer{
		c:      c,
		cfg:    cfg,
		stream: cfg.Keys.Stream(cfg.Kind),
		dead:   cfg.Keys.DeadLetter(cfg.Kind),
		kind:   cfg.Kind.String(),
		log:    cfg.Logger.With("stream", cfg.Kind.String()),
		m:      cfg.Metrics,
	}
	if co.m != nil {
		co.m.init(co.kind)
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
		if co.unconfirmed.Load() {
			// Write what was confirmed, then the pending entries once replicas hold them.
			if len(buf) > 0 {
				_ = co.process(ctx, buf, false)
				buf = nil
			}
			co.unconfirmed.Store(false)
			co.drainOwn(ctx)
			continue
		}
		// COUNT must stay above 0: XREADGROUP … COUNT 0 returns every entry there is.
		if wait >= time.Millisecond && len(buf) < co.cfg.BatchSize {
			got, err := co.read(ctx, ">", co.cfg.BatchSize-len(buf), wait)
			if isNoGroup(err) {
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
				if errors.Is(err, errNotReplicated) {
					co.log.WarnContext(ctx, "read entries are not on enough replicas yet; they stay pending", "replicas", co.cfg.Replicas, "failures", failures)
					sleep(ctx, backoff(failures))
					continue
				}
				co.log.WarnContext(ctx, "reading the flush stream failed", "err", err, "failures", failures)
				sleep(ctx, backoff(failures))
				continue
			}
			failures = 0
			if len(buf) == 0 && len(got) > 0 {
				first, touched = time.Now(), time.Now()
			}
			buf = append(buf, got...)
		}
		switch {
		case len(buf) == 0:
		case len(buf) >= co.cfg.BatchSize || time.Since(first) >= co.cfg.FlushInterval:
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
		cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
		err := groupScript.Exec(cctx, co.c, []string{co.stream}, []string{co.cfg.Group}).Error()
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("creating group %s on %s: %w", co.cfg.Group, co.stream, ctx.Err())
		}
		co.log.WarnContext(ctx, "creating the consumer group failed, retrying", "group", co.cfg.Group, "err", err)
		sleep(ctx, backoff(attempt))
	}
}

// drainOwn processes the entries still pending for this consumer from a previous run (it was
// killed, or its Postgres was down) before anything new.
func (co *Consumer) drainOwn(ctx context.Context) {
	last := "0"
	for failures := 0; ctx.Err() == nil; {
		got, err := co.read(ctx, last, co.cfg.BatchSize, 0)
		if isNoGroup(err) {
			return // nothing of ours can be pending in a group that does not exist
		}
		if err != nil {
			failures++
			co.log.WarnContext(ctx, "reading own pending entries failed", "err", err)
			sleep(ctx, backoff(failures))
			continue
		}
		if len(got) == 0 {
			return
		}
		co.log.InfoContext(ctx, "resuming own pending entries", "entries", len(got))
		co.processRedelivered(ctx, got)
		last = got[len(got)-1].id
	}
}

// read runs XREADGROUP from id (">" for new entries, else this consumer's history). It uses a
// context detached from ctx's cancellation: a read cut short could have moved entries into
// this consumer's pending list without returning them. block bounds it instead.
func (co *Consumer) read(ctx context.Context, id string, count int, block time.Duration) ([]entry, error) {
	if count < 1 {
		return nil, nil // COUNT 0 would mean "everything"
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), block+co.cfg.Timeout+co.cfg.ReplicaTimeout)
	defer cancel()
	b := co.c.B().Xreadgroup().Group(co.cfg.Group, co.cfg.Consumer).Count(int64(count))
	var cmd valkey.Completed
	if block > 0 {
		cmd = b.Block(block.Milliseconds()).Streams().Key(co.stream).Id(id).Build()
	} else {
		cmd = b.Streams().Key(co.stream).Id(id).Build()
	}
	r, err := co.confirmed(ctx, rctx, cmd)
	if err != nil {
		return nil, err
	}
	res, err := r.AsXRead()
	if valkey.IsValkeyNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	xs := res[co.stream]
	out := make([]entry, len(xs))
	for i, x := range xs {
		out[i] = entry{id: x.ID, fields: x.FieldValues}
	}
	if co.m != nil {
		co.m.read.WithLabelValues(co.kind).Add(float64(len(out)))
	}
	return out, nil
}

// confirmed runs cmd, a read that delivers entries. With Config.Replicas the read and a WAIT go
// in one DoMulti on a dedicated connection (the WAIT covers the read's own write to the pending
// list, which replication orders after the entries' XADDs), and while too few replicas answer
// the WAIT is repeated on that same connection, so that no re-read counts as a delivery. The
// connection is named with a random tag first and the tag checked with each WAIT: a WAIT on a
// connection valkey-go opened anew would count no earlier write. When the connection changed
// (a failover) or ctx ends first, the delivered entries stay pending, marked for a re-read,
// and errNotReplicated is returned.
func (co *Consumer) confirmed(ctx, rctx context.Context, cmd valkey.Completed) (valkey.ValkeyResult, error) {
	if co.cfg.Replicas == 0 {
		return co.c.Do(rctx, cmd), nil
	}
	dc, release := co.c.Dedicate()
	defer release()
	tag := fmt.Sprintf("chatpipe-%s-%016x", co.cfg.Consumer, rand.Uint64())
	wait := func() valkey.Completed {
		return dc.B().Wait().Numreplicas(int64(co.cfg.Replicas)).Timeout(co.cfg.ReplicaTimeout.Milliseconds()).Build()
	}
	res := dc.DoMulti(rctx, dc.B().ClientSetname().ConnectionName(tag).Build(), cmd, wait())
	if err := res[0].Error(); err != nil {
		return res[1], nil // nothing was read: the caller sees the read's error, or an empty read
	}
	read := res[1]
	if read.Error() != nil {
		return read, nil
	}
	n, err := res[2].AsInt64()
	for since := time.Now(); err == nil && n < int64(co.cfg.Replicas); {
		if ctx.Err() != nil {
			break
		}
		if time.Since(since) > 10*time.Second {
			co.log.WarnContext(ctx, "waiting for replicas to hold the entries read", "replicas", co.cfg.Replicas, "acknowledged", n)
			since = time.Now()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), co.cfg.Timeout+co.cfg.ReplicaTimeout)
		r := dc.DoMulti(wctx, dc.B().ClientGetname().Build(), wait())
		cancel()
		if name, gerr := r[0].ToString(); gerr != nil || name != tag {
			err = fmt.Errorf("the connection changed while waiting for replicas")
			break
		}
		n, err = r[1].AsInt64()
	}
	if err != nil || n < int64(co.cfg.Replicas) {
		co.unconfirmed.Store(true)
		if err == nil {
			err = fmt.Errorf("%d of %d replicas acknowledged", n, co.cfg.Replicas)
		}
		return read, fmt.Errorf("%w: %w", errNotReplicated, err)
	}
	return read, nil
}

type deadLetter struct {
	e      entry
	reason string // metric label
	err    string // human-readable
}

// processRedelivered dead-letters the entries delivered more than MaxDeliveries times as
// poison and processes the rest.
func (co *Consumer) processRedelivered(ctx context.Context, es []entry) {
	counts, err := co.deliveries(ctx, es)
	if err != nil {
		co.log.WarnContext(ctx, "reading delivery counts failed; processing anyway", "err", err)
	}
	var poison []deadLetter
	rest := es[:0:0]
	for _, e := range es {
		if n := counts[e.id]; n > int64(co.cfg.MaxDeliveries) {
			poison = append(poison, deadLetter{e: e, reason: ReasonPoison,
				err: fmt.Sprintf("poison: delivered %d times, more than the %d allowed", n, co.cfg.MaxDeliveries)})
			continue
		}
		rest = append(rest, e)
	}
	if len(poison) > 0 {
		co.deadLetter(ctx, poison, counts)
	}
	if len(rest) > 0 {
		_ = co.process(ctx, rest, false) // on failure the entries stay pending: drained or reclaimed later
	}
}

// process writes a batch and acks it: undecodable entries and rows Postgres refuses are
// dead-lettered, entries deleted from the stream while pending are counted as lost, transient
// errors are retried until ctx ends; then it returns the error and the entries stay pending.
// With ackAsync the ack is sent in the background after the commit, and process returns at
// once: the next batch's write overlaps it (one round trip less per batch on a backlog).
func (co *Consumer) process(ctx context.Context, es []entry, ackAsync bool) error {
	start := time.Now()
	if ackBeforeWrite {
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.id
		}
		_ = co.ack(ctx, ids)
	}
	var (
		recs   []message.Record
		recIdx []int
		dead   []deadLetter
		lost   []string
	)
	for i, e := range es {
		if e.fields == nil {
			lost = append(lost, e.id)
			continue
		}
		r, err := message.DecodeEntry(co.kind, e.id, e.fields)
		if err != nil {
			dead = append(dead, deadLetter{e: e, reason: ReasonDecode, err: err.Error()})
			continue
		}
		recs = append(recs, r)
		recIdx = append(recIdx, i)
	}
	var res pg.Result
	if len(recs) > 0 {
		var err error
		if res, err = co.persist(ctx, recs, es); err != nil {
			co.log.WarnContext(ctx, "batch left pending", "entries", len(es), "err", err)
			return err
		}
	}
	rejected := make(map[int]bool, len(res.Rejected))
	for _, rj := range res.Rejected {
		rejected[rj.Index] = true
		if errors.Is(rj.Err, pg.ErrIDReused) {
			co.log.ErrorContext(ctx, "a cache id was given to two messages; dead-lettering the second", "id", es[recIdx[rj.Index]].id, "err", rj.Err)
			dead = append(dead, deadLetter{e: es[recIdx[rj.Index]], reason: ReasonIDReused, err: rj.Err.Error()})
			continue
		}
		dead = append(dead, deadLetter{e: es[recIdx[rj.Index]], reason: ReasonRejected, err: "postgres refused the row: " + rj.Err.Error()})
	}
	if len(dead) > 0 {
		co.deadLetter(ctx, dead, nil)
	}
	deadIDs := make(map[string]bool, len(dead))
	for _, d := range dead {
		deadIDs[d.e.id] = true
	}
	ack := make([]string, 0, len(es))
	for _, e := range es {
		if !deadIDs[e.id] {
			ack = append(ack, e.id)
		}
	}
	co.ackWritten(ctx, ack, ackAsync)
	if len(lost) > 0 {
		co.reportLost(ctx, lost)
	}
	if co.m == nil {
		return nil
	}
	now := co.cfg.NowFunc()
	deletes := 0
	e2e := co.m.endToEnd.WithLabelValues(co.kind) // once per batch, not per row
	for j, r := range recs {
		if rejected[j] {
			continue
		}
		if r.Delete {
			deletes++
			continue
		}
		if ms, ok := idTime(r.StreamID); ok {
			e2e.Observe(now.Sub(ms).Seconds())
		}
	}
	co.m.persisted.WithLabelValues(co.kind).Add(float64(res.Inserted))
	co.m.deletes.WithLabelValues(co.kind).Add(float64(deletes))
	co.m.batchSize.WithLabelValues(co.kind).Observe(float64(len(es)))
	co.m.flushDuration.WithLabelValues(co.kind).Observe(time.Since(start).Seconds())
	return nil
}

// persist writes recs, retrying transient errors with capped, jittered exponential backoff
// while touching the entries so that no other consumer claims them meanwhile.
func (co *Consumer) persist(ctx context.Context, recs []message.Record, es []entry) (pg.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := co.cfg.Sink.Persist(ctx, co.cfg.Kind, recs)
		if err == nil {
			if attempt > 1 {
				co.log.InfoContext(ctx, "batch written after retries", "attempts", attempt, "entries", len(recs))
			}
			return res, nil
		}
		if ctx.Err() != nil {
			return res, err
		}
		class := pg.Class(err)
		if co.m != nil {
			co.m.retries.WithLabelValues(co.kind, class).Inc()
		}
		co.log.WarnContext(ctx, "writing the batch failed, retrying", "class", class, "attempt", attempt, "entries", len(recs), "err", err)
		co.touch(ctx, es)
		sleep(ctx, backoff(attempt))
	}
}

// deadLetter moves entries to the dead-letter stream, each atomically with its ack, in one
// pipelined round trip. counts, when nil, is read from XPENDING.
func (co *Consumer) deadLetter(ctx context.Context, dead []deadLetter, counts map[string]int64) {
	if counts == nil {
		es := make([]entry, len(dead))
		for i, d := range dead {
			es[i] = d.e
		}
		counts, _ = co.deliveries(ctx, es)
	}
	failedAt := co.cfg.NowFunc().UTC().Format(time.RFC3339Nano)
	calls := make([]lua.Call, len(dead))
	for i, d := range dead {
		args := []string{co.cfg.Group, d.e.id}
		keys := make([]string, 0, len(d.e.fields))
		for k := range d.e.fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			args = append(args, k, d.e.fields[k])
		}
		args = append(args,
			"error", d.err,
			"original_id", d.e.id,
			"deliveries", strconv.FormatInt(max(counts[d.e.id], 1), 10),
			"consumer", co.cfg.Consumer,
			"failed_at", failedAt)
		calls[i] = lua.Call{Keys: []string{co.stream, co.dead}, Args: args}
	}
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	for i, r := range deadLetterScript.ExecMulti(cctx, co.c, calls) {
		d := dead[i]
		n, err := r.AsInt64()
		switch {
		case err != nil:
			co.log.WarnContext(ctx, "dead-lettering failed; the entry stays pending", "id", d.e.id, "err", err)
		case n == 1:
			co.log.WarnContext(ctx, "entry dead-lettered", "id", d.e.id, "reason", d.reason, "error", d.err)
			if co.m != nil {
				co.m.deadLettered.WithLabelValues(co.kind, d.reason).Inc()
			}
		}
	}
}

func (co *Consumer) ack(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	return co.c.Do(cctx, co.c.B().Xack().Key(co.stream).Group(co.cfg.Group).Id(ids...).Build()).Error()
}

// ackWritten acks the entries of a committed batch, in the background when async. One ack at
// most is in flight: the next one waits for it.
func (co *Consumer) ackWritten(ctx context.Context, ids []string, async bool) {
	co.waitAck()
	ack := func(ctx context.Context) {
		if err := co.ack(ctx, ids); err != nil {
			// The rows are committed; the entries will be delivered again and written as no-ops.
			co.log.WarnContext(ctx, "acking a written batch failed; it will be redelivered", "entries", len(ids), "err", err)
		}
	}
	if !async {
		ack(ctx)
		return
	}
	done := make(chan struct{})
	co.ackInFlight = done
	go func() {
		defer close(done)
		ack(context.WithoutCancel(ctx)) // bounded by the Valkey timeout; it must not be lost to shutdown
	}()
}

// waitAck waits for the ack in flight, if any.
func (co *Consumer) waitAck() {
	if co.ackInFlight != nil {
		<-co.ackInFlight
		co.ackInFlight = nil
	}
}

// reportLost acks pending entries that were deleted from the stream before they were persisted
// (someone trimmed by length or XDELed them), and counts and logs them: never silently.
func (co *Consumer) reportLost(ctx context.Context, ids []string) {
	if co.m != nil {
		co.m.lost.WithLabelValues(co.kind).Add(float64(len(ids)))
	}
	co.log.ErrorContext(ctx, "pending entries were deleted from the stream before they were persisted",
		"count", len(ids), "ids", strings.Join(ids[:min(len(ids), 20)], ","))
	if err := co.ack(ctx, ids); err != nil {
		co.log.WarnContext(ctx, "acking deleted entries failed", "err", err)
	}
}

// touch resets the idle time of entries this consumer holds (XCLAIM to itself with JUSTID,
// which does not count as a delivery), so that they are not reclaimed while it still works.
func (co *Consumer) touch(ctx context.Context, es []entry) {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.id
	}
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	cmd := co.c.B().Xclaim().Key(co.stream).Group(co.cfg.Group).Consumer(co.cfg.Consumer).MinIdleTime("0").Id(ids...).Justid().Build()
	if err := co.c.Do(cctx, cmd).Error(); err != nil {
		co.log.WarnContext(ctx, "touching held entries failed", "err", err)
	}
}

// deliveries returns how often each entry was delivered, from this consumer's pending list.
func (co *Consumer) deliveries(ctx context.Context, es []entry) (map[string]int64, error) {
	out := make(map[string]int64, len(es))
	if len(es) == 0 {
		return out, nil
	}
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.id
	}
	slices.SortFunc(ids, compareIDs)
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	cmd := co.c.B().Xpending().Key(co.stream).Group(co.cfg.Group).Start(ids[0]).End(ids[len(ids)-1]).
		Count(int64(len(ids) + 10*co.cfg.BatchSize)).Consumer(co.cfg.Consumer).Build()
	rows, err := co.c.Do(cctx, cmd).ToArray()
	if err != nil {
		return out, err
	}
	for _, row := range rows {
		f, err := row.ToArray()
		if err != nil || len(f) != 4 {
			continue
		}
		id, _ := f[0].ToString()
		n, _ := f[3].AsInt64()
		out[id] = n
	}
	return out, nil
}

// reclaim claims entries idle longer than MinIdle from any consumer (XAUTOCLAIM), in batches.
func (co *Consumer) reclaim(ctx context.Context) {
	start := "0-0"
	for round := 0; round < 1000 && ctx.Err() == nil; round++ {
		cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout+co.cfg.ReplicaTimeout)
		cmd := co.c.B().Xautoclaim().Key(co.stream).Group(co.cfg.Group).Consumer(co.cfg.Consumer).
			MinIdleTime(strconv.FormatInt(co.cfg.MinIdle.Milliseconds(), 10)).Start(start).Count(int64(co.cfg.BatchSize)).Build()
		r, err := co.confirmed(ctx, cctx, cmd)
		if err != nil {
			cancel()
			co.log.WarnContext(ctx, "claimed entries are not on enough replicas yet; they stay pending", "err", err)
			return
		}
		reply, err := r.ToArray()
		cancel()
		if err != nil {
			co.log.WarnContext(ctx, "reclaiming idle entries failed", "err", err)
			return
		}
		next, es, deleted, err := parseAutoclaim(reply)
		if err != nil {
			co.log.ErrorContext(ctx, "unexpected XAUTOCLAIM reply", "err", err)
			return
		}
		if len(deleted) > 0 {
			// XAUTOCLAIM has already removed them from the pending list: they are gone.
			if co.m != nil {
				co.m.lost.WithLabelValues(co.kind).Add(float64(len(deleted)))
			}
			co.log.ErrorContext(ctx, "claimed entries were deleted from the stream before they were persisted",
				"count", len(deleted), "ids", strings.Join(deleted[:min(len(deleted), 20)], ","))
		}
		if len(es) > 0 {
			if co.m != nil {
				co.m.reclaimed.WithLabelValues(co.kind).Add(float64(len(es)))
				co.m.read.WithLabelValues(co.kind).Add(float64(len(es)))
			}
			co.log.InfoContext(ctx, "reclaimed idle entries", "entries", len(es))
			co.processRedelivered(ctx, es)
		}
		if next == "0-0" {
			return
		}
		start = next
	}
}

func parseAutoclaim(reply []valkey.ValkeyMessage) (next string, es []entry, deleted []string, err error) {
	if len(reply) < 2 {
		return "", nil, nil, fmt.Errorf("%d elements", len(reply))
	}
	if next, err = reply[0].ToString(); err != nil {
		return "", nil, nil, err
	}
	xs, err := reply[1].AsXRange()
	if err != nil {
		return "", nil, nil, err
	}
	for _, x := range xs {
		es = append(es, entry{id: x.ID, fields: x.FieldValues})
	}
	if len(reply) > 2 {
		if deleted, err = reply[2].AsStrSlice(); err != nil {
			return "", nil, nil, err
		}
	}
	return next, es, deleted, nil
}

// trim removes what every group has acked (trim.lua).
func (co *Consumer) trim(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	n, err := trimScript.Exec(cctx, co.c, []string{co.stream}, nil).AsInt64()
	if err != nil {
		co.log.WarnContext(ctx, "trimming the stream failed", "err", err)
		return
	}
	if co.m != nil {
		co.m.trimmed.WithLabelValues(co.kind).Add(float64(n))
	}
}

// janitor deletes other consumers idle longer than JanitorIdle with nothing pending; their
// pending entries, if any, are claimed by reclaim first (they are idle far beyond MinIdle).
func (co *Consumer) janitor(ctx context.Context) {
	cs, err := co.Consumers(ctx)
	if err != nil {
		co.log.WarnContext(ctx, "listing consumers failed", "err", err)
		return
	}
	for _, c := range cs {
		if c.Name == co.cfg.Consumer || c.Idle < co.cfg.JanitorIdle {
			continue
		}
		if c.Pending > 0 {
			co.log.WarnContext(ctx, "idle consumer still has pending entries; leaving it to reclaim", "consumer", c.Name, "pending", c.Pending)
			continue
		}
		deleted, err := co.delConsumer(ctx, c.Name, co.cfg.JanitorIdle)
		if err != nil {
			co.log.WarnContext(ctx, "removing an idle consumer failed", "consumer", c.Name, "err", err)
		} else if deleted {
			co.log.InfoContext(ctx, "removed idle consumer", "consumer", c.Name, "idle", c.Idle)
		}
	}
}

// leave deletes this consumer from the group when nothing is pending for it.
func (co *Consumer) leave(ctx context.Context) {
	deleted, err := co.delConsumer(ctx, co.cfg.Consumer, 0)
	switch {
	case err != nil:
		co.log.WarnContext(ctx, "could not leave the consumer group; a janitor removes the consumer later", "consumer", co.cfg.Consumer, "err", err)
	case deleted:
		co.log.InfoContext(ctx, "left the consumer group", "consumer", co.cfg.Consumer)
	default:
		co.log.InfoContext(ctx, "kept the consumer: entries are pending for it", "consumer", co.cfg.Consumer)
	}
}

func (co *Consumer) delConsumer(ctx context.Context, name string, minIdle time.Duration) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	n, err := delConsumerScript.Exec(cctx, co.c, []string{co.stream},
		[]string{co.cfg.Group, name, strconv.FormatInt(minIdle.Milliseconds(), 10)}).AsInt64()
	return n == 1, err
}

// ConsumerInfo describes one consumer of the group.
type ConsumerInfo struct {
	Name    string
	Pending int64
	Idle    time.Duration
}

// Consumers lists the group's consumers.
func (co *Consumer) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, co.cfg.Timeout)
	defer cancel()
	rows, err := co.c.Do(cctx, co.c.B().XinfoConsumers().Key(co.stream).Group(co.cfg.Group).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]ConsumerInfo, 0, len(rows))
	for _, r := range rows {
		m, err := r.AsMap()
		if err != nil {
			return nil, err
		}
		name, pending, idle := m["name"], m["pending"], m["idle"]
		n, _ := name.ToString()
		p, _ := pending.AsInt64()
		i, _ := idle.AsInt64()
		out = append(out, ConsumerInfo{Name: n, Pending: p, Idle: time.Duration(i) * time.Millisecond})
	}
	return out, nil
}

// isNoGroup reports Valkey's NOGROUP error (no such stream or consumer group), by the error
// code that starts the reply; valkey-go has no helper for it.
func isNoGroup(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOGROUP")
}

// idTime returns the enqueue time encoded in a stream id.
func idTime(id string) (time.Time, bool) {
	ms, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// compareIDs orders stream ids numerically.
func compareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	an, _ := strconv.ParseUint(am, 10, 64)
	bn, _ := strconv.ParseUint(bm, 10, 64)
	if an != bn {
		if an < bn {
			return -1
		}
		return 1
	}
	aq, _ := strconv.ParseUint(as, 10, 64)
	bq, _ := strconv.ParseUint(bs, 10, 64)
	switch {
	case aq < bq:
		return -1
	case aq > bq:
		return 1
	}
	return 0
}

// backoff is capped exponential with jitter: about 100ms, 200ms, … up to 5s, each ±50%.
func backoff(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt-1, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
