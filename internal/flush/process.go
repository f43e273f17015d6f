package flush

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/chatpipe/chatpipe/internal/backoff"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/streams"
)

type deadLetter struct {
	e      entry
	reason string // metric label
	err    string // human-readable
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
			ids[i] = e.ID
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
		if e.Fields == nil {
			lost = append(lost, e.ID)
			continue
		}
		r, err := message.DecodeEntry(co.kind, co.cfg.DefaultChannel, e.ID, e.Fields)
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
			co.log.ErrorContext(ctx, "a cache id was given to two messages; dead-lettering the second", "id", es[recIdx[rj.Index]].ID, "err", rj.Err)
			dead = append(dead, deadLetter{e: es[recIdx[rj.Index]], reason: ReasonIDReused, err: rj.Err.Error()})
			continue
		}
		dead = append(dead, deadLetter{e: es[recIdx[rj.Index]], reason: ReasonRejected, err: "postgres refused the row: " + rj.Err.Error()})
	}
	if len(dead) > 0 {
		co.deadLetter(ctx, dead, nil)
	}
	for _, i := range res.Tombstoned {
		rejected[i] = true // deleted before it was written: no row, and no ring to repair
	}
	if co.cfg.RepairFunc != nil {
		co.repair(ctx, recs, recIdx, rejected, es)
	}
	if co.cfg.ForgetFunc != nil {
		co.forget(ctx, recs, res)
	}
	if co.cfg.Standbys == nil {
		// With standbys the entries stay indexed until their trim point is released, when the
		// standbys have their rows (trimReplayed).
		co.unindex(ctx, recs)
	}
	deadIDs := make(map[string]bool, len(dead))
	for _, d := range dead {
		deadIDs[d.e.ID] = true
	}
	ack := make([]string, 0, len(es))
	for _, e := range es {
		if !deadIDs[e.ID] {
			ack = append(ack, e.ID)
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
		switch r.Op {
		case message.OpDelete:
			deletes++
			continue
		case message.OpEdit, message.OpReact:
			continue
		case message.OpPost:
		}
		if ms, ok := streams.IDTime(r.StreamID); ok {
			e2e.Observe(now.Sub(ms).Seconds())
		}
	}
	co.m.persisted.WithLabelValues(co.kind).Add(float64(res.Inserted))
	co.m.deletes.WithLabelValues(co.kind).Add(float64(deletes))
	co.m.edits.WithLabelValues(co.kind).Add(float64(res.Edited))
	co.m.reactions.WithLabelValues(co.kind).Add(float64(res.Reacted))
	co.m.batchSize.WithLabelValues(co.kind).Observe(float64(len(es)))
	co.m.flushDuration.WithLabelValues(co.kind).Observe(time.Since(start).Seconds())
	return nil
}

// unindex removes the batch's messages — written, tombstoned or dead-lettered, all now out of
// the backlog — from their timelines' backlog indexes, after the commit and before the ack:
// history then finds them in PostgreSQL. A failure only leaves members that history removes
// when it meets them trimmed; it does not hold the ack.
func (co *Consumer) unindex(ctx context.Context, recs []message.Record) {
	var f streams.Flushed
	for i := range recs {
		r := &recs[i]
		switch r.Op {
		case message.OpDelete, message.OpReact: // in no backlog index
			continue
		case message.OpEdit:
			// The edit's mark, unless a later edit replaced it (the edit script reads it
			// as the message's current version until PostgreSQL has it).
			f.Mark(keyspace.Edits(co.stream), strconv.FormatInt(r.CacheID, 10), strconv.FormatInt(r.Version, 10))
		case message.OpPost:
		}
		for _, tl := range r.Message.Timelines(co.cfg.Kind) {
			f.Index(keyspace.BacklogIndex(co.stream, tl), r.StreamID)
		}
	}
	if err := co.g.Unindex(ctx, f); err != nil {
		co.log.WarnContext(ctx, "could not clear flushed entries from the backlog indexes; history clears them as it meets them", "err", err)
	}
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
		backoff.Wait(ctx, attempt)
	}
}

// deadLetter moves entries to the dead-letter stream, each atomically with its ack, in one
// pipelined round trip. counts, when nil, is read from XPENDING.
func (co *Consumer) deadLetter(ctx context.Context, dead []deadLetter, counts map[string]int64) {
	if counts == nil {
		ids := make([]string, len(dead))
		for i, d := range dead {
			ids[i] = d.e.ID
		}
		counts, _ = co.g.Deliveries(ctx, ids)
	}
	moves := make([]streams.Failed, len(dead))
	for i, d := range dead {
		moves[i] = streams.Failed{Entry: d.e, Reason: d.reason, Error: d.err, Deliveries: counts[d.e.ID]}
	}
	moved, errs := co.g.MoveToDeadLetter(ctx, moves, co.cfg.NowFunc())
	for i, d := range dead {
		switch {
		case errs[i] != nil:
			co.log.WarnContext(ctx, "dead-lettering failed; the entry stays pending", "id", d.e.ID, "err", errs[i])
		case moved[i]:
			co.log.WarnContext(ctx, "entry dead-lettered", "id", d.e.ID, "reason", d.reason, "error", d.err)
			if co.m != nil {
				co.m.deadLettered.WithLabelValues(co.kind, d.reason).Inc()
			}
		}
	}
}

func (co *Consumer) ack(ctx context.Context, ids []string) error { return co.g.Ack(ctx, ids) }

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

// touch resets the idle time of entries this consumer holds, so that they are not reclaimed
// while it still works.
func (co *Consumer) touch(ctx context.Context, es []entry) {
	if err := co.g.Touch(ctx, ids(es)); err != nil {
		co.log.WarnContext(ctx, "touching held entries failed", "err", err)
	}
}

func ids(es []entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

// repair hands the written messages and edits (not deletions, not rejected ones) and their ring entries,
// as the stream holds them, to RepairFunc before the batch is acked: a ring that missed an entry
// when ingest stopped between the enqueue and the ring write gets it now. A failure is logged;
// the rows are written and the batch is acked all the same (the rings are a cache).
func (co *Consumer) repair(ctx context.Context, recs []message.Record, recIdx []int, rejected map[int]bool, es []entry) {
	var written []message.Record
	var entries []string
	for j, r := range recs {
		if r.Op == message.OpDelete || r.Op == message.OpReact || rejected[j] {
			continue // an edit's entry repairs too: the rings keep the higher version
		}
		written = append(written, r)
		entries = append(entries, es[recIdx[j]].Fields[message.FieldPayload])
	}
	if len(written) == 0 {
		return
	}
	if err := co.cfg.RepairFunc(ctx, written, entries); err != nil {
		co.log.WarnContext(ctx, "repairing the rings failed", "entries", len(written), "err", err)
	}
}

// forget hands the private messages that are gone (rows the batch's deletions removed, and
// messages that met their deletion first) to ForgetFunc before the ack, so that their users'
// rings are cleared of them. A failure is logged: the rings are a cache, and history never
// reads private rings.
func (co *Consumer) forget(ctx context.Context, recs []message.Record, res pg.Result) {
	gone := append([]message.Record(nil), res.Removed...)
	for _, i := range res.Tombstoned {
		gone = append(gone, recs[i])
	}
	if len(gone) == 0 {
		return
	}
	if err := co.cfg.ForgetFunc(ctx, gone); err != nil {
		co.log.WarnContext(ctx, "clearing deleted messages from the rings failed", "messages", len(gone), "err", err)
	}
}
