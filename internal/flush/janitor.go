package flush

import (
	"context"
	"time"

	"github.com/chatpipe/chatpipe/internal/streams"
)

// trim removes what every group has acked.
func (co *Consumer) trim(ctx context.Context) {
	n, err := co.g.Trim(ctx, co.cfg.TailRetention)
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
	return co.g.DelConsumer(ctx, name, minIdle)
}

// Consumers lists the group's consumers.
func (co *Consumer) Consumers(ctx context.Context) ([]streams.ConsumerInfo, error) {
	return co.g.Consumers(ctx)
}
