package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatpipe/chatpipe/internal/message"
)

// History reads persisted messages page by page, for ingest's history endpoints. It only
// reads: the role it runs as needs SELECT on the message tables (grants.sql).
type History struct {
	pool *pgxpool.Pool
}

// NewHistory returns a History on pool.
func NewHistory(pool *pgxpool.Pool) *History { return &History{pool: pool} }

// Standby reports whether history reads a standby (a server in recovery).
func (h *History) Standby(ctx context.Context) (bool, error) {
	var standby bool
	err := h.pool.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
	return standby, err
}

// PageQuery asks for one page.
type PageQuery struct {
	Timeline message.Timeline
	// Before pages below Cursor, newest first; else above it, oldest first. Cursor 0 with Before
	// is the newest page.
	Before bool
	Cursor int64
	// Limit bounds the rows.
	Limit int
	// Exclude lists ids not to return (deletions not yet applied).
	Exclude []int64
}

// Page returns up to q.Limit rows in q's order, as records (StreamID empty).
func (h *History) Page(ctx context.Context, q PageQuery) ([]message.Record, error) {
	cursor := q.Cursor
	if q.Before && cursor == 0 {
		cursor = math.MaxInt64
	}
	exclude := q.Exclude
	if exclude == nil {
		exclude = []int64{}
	}
	t := tableOf(q.Timeline.Kind)
	sql := t.historyAfter
	if q.Before {
		sql = t.historyBefore
	}
	args := []any{cursor, q.Limit, exclude, q.Timeline.Name()} // the channel, or the user of both seeks
	rows, err := h.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s history: %w", q.Timeline.Kind, err)
	}
	out := make([]message.Record, 0, q.Limit)
	var r message.Record
	var editedAt *time.Time
	_, err = pgx.ForEachRow(rows, rowFields(&r, &editedAt), func() error {
		out = append(out, withEdit(r, editedAt))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s history: %w", q.Timeline.Kind, err)
	}
	return out, nil
}

// One returns the persisted message id of kind, whole; ok is false when no such row exists.
func (h *History) One(ctx context.Context, kind message.Kind, id int64) (r message.Record, ok bool, err error) {
	var editedAt *time.Time
	err = h.pool.QueryRow(ctx, tableOf(kind).one, id).Scan(rowFields(&r, &editedAt)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("reading a %s: %w", kind, err)
	}
	return withEdit(r, editedAt), true, nil
}

// rowFields are the scan targets of a row as history and one read it.
func rowFields(r *message.Record, editedAt **time.Time) []any {
	return []any{&r.CacheID, &r.Message.OwnerID, &r.Message.RecipientID, &r.Message.ChannelID, &r.Message.Username, &r.Message.Content, &r.CreatedAt, &r.Version, editedAt}
}

// withEdit sets the record's edit time, NULL until edited.
func withEdit(r message.Record, editedAt *time.Time) message.Record {
	r.EditedAt = time.Time{}
	if editedAt != nil {
		r.EditedAt = *editedAt
	}
	return r
}

// Ping checks that PostgreSQL answers.
func (h *History) Ping(ctx context.Context) error { return h.pool.Ping(ctx) }
