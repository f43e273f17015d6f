package pg_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatpipe/chatpipe/internal/message"
)

// BenchmarkInsert compares the candidate batch writes at the default batch size: the unnest
// INSERT, COPY into a temporary table followed by INSERT … SELECT, and the lock + tombstone
// query + COPY straight into the table that Persist uses from pg.CopyMin rows on (falling back
// to the INSERT when a row is already there). Each skips tombstoned ids.
func BenchmarkInsert(b *testing.B) {
	const batch = 500
	mk := func(next *int64) []message.Record {
		recs := make([]message.Record, batch)
		for i := range recs {
			*next++
			recs[i] = rec(*next, "a typical chat message of some fifty bytes or so....")
		}
		return recs
	}
	b.Run("unnest", func(b *testing.B) {
		bb := setup(b)
		var next int64
		start := time.Now()
		for b.Loop() {
			if _, err := bb.store.PersistInsert(context.Background(), message.Public, mk(&next)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(next)/time.Since(start).Seconds(), "rows/s")
	})
	b.Run("copy_temp_table", func(b *testing.B) {
		bb := setup(b)
		ctx := context.Background()
		conn, err := bb.pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Release()
		if _, err := conn.Exec(ctx, `CREATE TEMP TABLE staging (LIKE chat_messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS`); err != nil {
			b.Fatal(err)
		}
		cols := []string{"cache_id", "owner_id", "username", "content", "created_at", "stream_id"}
		var next int64
		start := time.Now()
		for b.Loop() {
			recs := mk(&next)
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{"staging"}, cols, pgx.CopyFromSlice(len(recs), func(i int) ([]any, error) {
					r := recs[i]
					return []any{r.CacheID, r.Message.OwnerID, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID}, nil
				}))
				if err != nil {
					return err
				}
				_, err = tx.Exec(ctx, `INSERT INTO chat_messages (cache_id, owner_id, username, content, created_at, stream_id)
					SELECT s.cache_id, s.owner_id, s.username, s.content, s.created_at, s.stream_id FROM staging s
					WHERE NOT EXISTS (SELECT 1 FROM deleted_messages d WHERE d.kind = 'message' AND d.cache_id = s.cache_id)
					ON CONFLICT (cache_id) DO NOTHING`)
				return err
			})
			if err != nil {
				b.Fatal(fmt.Errorf("copy batch: %w", err))
			}
		}
		b.ReportMetric(float64(next)/time.Since(start).Seconds(), "rows/s")
	})
	b.Run("copy", func(b *testing.B) {
		bb := setup(b)
		var next int64
		start := time.Now()
		for b.Loop() {
			if _, err := bb.store.Persist(context.Background(), message.Public, mk(&next)); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(next)/time.Since(start).Seconds(), "rows/s")
	})
}
