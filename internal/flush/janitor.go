package flush

import (
	"cmp"
	"context"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// trim removes what every group has acked (and, with Config.Standbys, what the standbys have
// replayed the commits of).
func (co *Consumer) trim(ctx context.Context) {
	var n int64
	var err error
	if co.cfg.Standbys == nil {
		n, err = co.g.Trim(ctx, co.cfg.TailRetention)
	} else {
		n, err = co.trimReplayed(ctx)
	}
	if err != nil {
		co.log.WarnContext(ctx, "trimming the stream failed", "err", err)
		return
	}
	if co.m != nil {
		co.m.trimmed.WithLabelValues(co.kind).Add(float64(n))
	}
}

// trimPoint is an id below which every entry had been acked, and a WAL position of the primary
// read after that: every acked entry's commit is at or below it.
type trimPoint struct {
	below string
	lsn   uint64
	at    time.Time
}

// maxHeld bounds the trim points a consumer keeps. When full, the newest is replaced: the old
// ones are released in turn as the standbys replay, so trimming lags but goes on.
const maxHeld = 64

// trimReplayed trims below the newest trim point the standbys have replayed, then records the
// next one. An entry is acked only after its row committed, so reading the WAL position after
// the trim script found "everything below X is acked" bounds the commits of everything below X:
// once the standbys replayed that position, a reader of a standby finds those rows, and the
// entries may leave the stream (docs/readpath.md: the stream is read before PostgreSQL, so the two
// reads overlap). Until then they stay, counting toward INGEST_BACKLOG_CAP.
func (co *Consumer) trimReplayed(ctx context.Context) (int64, error) {
	r, err := co.cfg.Standbys.Replayed(ctx)
	if err != nil {
		return 0, err
	}
	bound := "0-0" // nothing released: trim nothing
	for len(co.held) > 0 && r.LSN > 0 && co.held[0].lsn <= r.LSN {
		bound = co.held[0].below
		co.held = co.held[1:]
	}
	if bound != "0-0" {
		// History on a standby reads the backlog through the indexes: the entries leave them
		// only now that the standbys replayed their rows, just before they leave the stream.
		if err := co.unindexBelow(ctx, bound); err != nil {
			return 0, err
		}
	}
	n, below, err := co.g.TrimBelow(ctx, co.cfg.TailRetention, bound)
	if err != nil {
		return 0, err
	}
	if below != "0-0" && (len(co.held) == 0 || co.held[len(co.held)-1].below != below) && below != bound {
		lsn, err := co.cfg.Standbys.Position(ctx)
		if err != nil {
			return n, err
		}
		p := trimPoint{below: below, lsn: lsn, at: time.Now()}
		if len(co.held) == maxHeld {
			co.held[len(co.held)-1] = p
		} else {
			co.held = append(co.held, p)
		}
	}
	if co.m != nil {
		co.m.standbysWanted.Set(float64(co.cfg.Standbys.Want()))
		co.m.standbysReplaying.Set(float64(r.Standbys))
		co.m.standbyLag.Set(r.Lag.Seconds())
		var since time.Time
		if len(co.held) > 0 {
			since = co.held[0].at
		}
		co.m.trimHeld.set(co.stream, co.kind, since)
	}
	// Once per episode: the trim points piled up (a minute of them) behind the standbys.
	if stuck := len(co.held) == maxHeld; stuck != co.heldFull {
		co.heldFull = stuck
		if stuck {
			co.log.WarnContext(ctx, "trimming waits for the PostgreSQL standbys; the flush stream grows toward INGEST_BACKLOG_CAP until they replay",
				"standbys_wanted", co.cfg.Standbys.Want(), "standbys_replaying", r.Standbys, "replay_lag", r.Lag)
		}
	}
	return n, nil
}

// unindexBelow removes the messages of the stream's entries below bound from their timelines'
// backlog indexes, a thousand entries a read. It goes on from the last bound it reached: the
// entries below it were unindexed then (and may still be in the stream, kept by the retention).
func (co *Consumer) unindexBelow(ctx context.Context, bound string) error {
	const chunk = 1000
	start := cmp.Or(co.unindexedTo, "-") // entries below it are done; it is not
	for {
		es, err := co.g.Range(ctx, start, "("+bound, chunk)
		if err != nil {
			return err
		}
		recs := make([]message.Record, 0, len(es))
		for _, e := range es {
			if r, err := message.DecodeEntry(co.kind, co.cfg.DefaultChannel, e.ID, e.Fields); err == nil {
				recs = append(recs, r)
			}
		}
		co.unindex(ctx, recs)
		if len(es) < chunk {
			co.unindexedTo = bound
			return nil
		}
		start = "(" + es[len(es)-1].ID
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
	return co.g.DelConsumer(ctx, name, minIdle)
}

// Consumers lists the group's consumers.
func (co *Consumer) Consumers(ctx context.Context) ([]streams.ConsumerInfo, error) {
	return co.g.Consumers(ctx)
}
