package flush

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/chatpipe/chatpipe/internal/backoff"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// drainOwn processes the entries still pending for this consumer from a previous run (it was
// killed, or its Postgres was down) before anything new.
func (co *Consumer) drainOwn(ctx context.Context) {
	last := "0"
	for failures := 0; ctx.Err() == nil; {
		got, err := co.read(ctx, last, co.cfg.BatchSize, 0)
		if streams.IsNoGroup(err) {
			return // nothing of ours can be pending in a group that does not exist
		}
		if err != nil {
			failures++
			co.log.WarnContext(ctx, "reading own pending entries failed", "err", err)
			backoff.Wait(ctx, failures)
			continue
		}
		if len(got) == 0 {
			return
		}
		co.log.InfoContext(ctx, "resuming own pending entries", "entries", len(got))
		co.processRedelivered(ctx, got)
		last = got[len(got)-1].ID
	}
}

// processRedelivered dead-letters the entries delivered more than MaxDeliveries times as
// poison and processes the rest.
func (co *Consumer) processRedelivered(ctx context.Context, es []entry) {
	counts, err := co.g.Deliveries(ctx, ids(es))
	if err != nil {
		co.log.WarnContext(ctx, "reading delivery counts failed; processing anyway", "err", err)
	}
	var poison []deadLetter
	rest := es[:0:0]
	for _, e := range es {
		if n := counts[e.ID]; n > int64(co.cfg.MaxDeliveries) {
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

// reclaim claims entries idle longer than MinIdle from any consumer (XAUTOCLAIM), in batches.
func (co *Consumer) reclaim(ctx context.Context) {
	start := "0-0"
	for round := 0; round < 1000 && ctx.Err() == nil; round++ {
		next, es, deleted, err := co.g.Claim(ctx, start, co.cfg.BatchSize, co.cfg.MinIdle)
		if errors.Is(err, streams.ErrNotReplicated) {
			co.log.WarnContext(ctx, "claimed entries are not on enough replicas yet; they stay pending", "err", err)
			return
		}
		if err != nil {
			co.log.WarnContext(ctx, "reclaiming idle entries failed", "err", err)
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
