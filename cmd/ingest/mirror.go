package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// mirrorLoop moves the legacy flush lists into the streams at start and then every interval, so
// that ingest can be deployed beside a running list-based cache without losing its messages.
// Failures are logged and retried at the next tick: the lists keep what was not moved.
func mirrorLoop(ctx context.Context, st *store.Store, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for _, kind := range message.Kinds {
			n, err := st.MirrorAll(ctx, kind)
			if n > 0 {
				log.InfoContext(ctx, "mirrored legacy flush list", "kind", kind.String(), "entries", n)
			}
			if err != nil && ctx.Err() == nil {
				log.WarnContext(ctx, "mirroring legacy flush list failed", "kind", kind.String(), "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
