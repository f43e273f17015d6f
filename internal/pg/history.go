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
	var x extra
	_, err = pgx.ForEachRow(rows, rowFields(&r, &x), func() error {
		out = append(out, x.set(r))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s history: %w", q.Timeline.Kind, err)
	}
	return out, nil
}

// One returns the persisted message id of kind, whole; ok is false when no such row exists.
func (h *History) One(ctx context.Context, kind message.Kind, id int64) (r message.Record, ok bool, err error) {
	var x extra
	err = h.pool.QueryRow(ctx, tableOf(kind).one, id).Scan(rowFields(&r, &x)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("reading a %s: %w", kind, err)
	}
	return x.set(r), true, nil
}

// rowFields are the scan targets of a row as history and one read it.
func rowFields(r *message.Record, x *extra) []any {
	return []any{&r.CacheID, &r.Message.OwnerID, &r.Message.RecipientID, &r.Message.ChannelID, &r.Message.Username, &r.Message.Content, &r.CreatedAt, &r.Version, &x.editedAt,
		&x.reactions, &r.ReactionsVersion}
}

// extra are the scan targets of a row that a record holds in another form: the edit time
// (NULL until edited) and the reaction counts (” without any).
type extra struct {
	editedAt  *time.Time
	reactions string
}

// set returns r with x's values.
func (x *extra) set(r message.Record) message.Record {
	r.EditedAt, r.Reactions = time.Time{}, nil
	if x.editedAt != nil {
		r.EditedAt = *x.editedAt
	}
	if x.reactions != "" && x.reactions != "[]" {
		r.Reactions = []byte(x.reactions)
	}
	return r
}

// Ping checks that PostgreSQL answers.
func (h *History) Ping(ctx context.Context) error { return h.pool.Ping(ctx) }

// Reactions returns message id's reactions as PostgreSQL holds them: the counts (a JSON array,
// "[]" without any), their version (0: none), and the emoji user has on it with the version of
// each, oldest first.
func (h *History) Reactions(ctx context.Context, kind message.Kind, id int64, user string) (counts []byte, version int64, mine []string, versions []int64, err error) {
	var c string
	if err := h.pool.QueryRow(ctx, tableOf(kind).reactions, id, user).Scan(&c, &version, &mine, &versions); err != nil {
		return nil, 0, nil, nil, fmt.Errorf("reading a %s's reactions: %w", kind, err)
	}
	return []byte(c), version, mine, versions, nil
}

// Reactor is a user who reacted, and the version of the reaction (the page's cursor).
type Reactor struct {
	UserID  string `json:"user_id"`
	Version int64  `json:"-"`
}

// Reactors returns up to limit users who reacted with emoji on message id, oldest first, after
// the reaction of version after (0: from the first).
func (h *History) Reactors(ctx context.Context, kind message.Kind, id int64, emoji string, after int64, limit int) ([]Reactor, error) {
	rows, err := h.pool.Query(ctx, tableOf(kind).reacted, id, emoji, after, limit)
	if err != nil {
		return nil, fmt.Errorf("reading a %s's reactions: %w", kind, err)
	}
	var out []Reactor
	var r Reactor
	if _, err := pgx.ForEachRow(rows, []any{&r.UserID, &r.Version}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading a %s's reactions: %w", kind, err)
	}
	return out, nil
}

// Mine returns the emoji user has on each of the messages ids, by id.
func (h *History) Mine(ctx context.Context, kind message.Kind, ids []int64, user string) (map[int64]map[string]bool, error) {
	rows, err := h.pool.Query(ctx, tableOf(kind).mine, ids, user)
	if err != nil {
		return nil, fmt.Errorf("reading a viewer's reactions: %w", err)
	}
	out := make(map[int64]map[string]bool)
	var id int64
	var emoji string
	if _, err := pgx.ForEachRow(rows, []any{&id, &emoji}, func() error {
		if out[id] == nil {
			out[id] = make(map[string]bool)
		}
		out[id][emoji] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading a viewer's reactions: %w", err)
	}
	return out, nil
}

// Counts are a message's reaction counts (a JSON array) and their version.
type Counts struct {
	Counts  []byte
	Version int64
}

// Counts returns the reaction counts PostgreSQL holds of the messages ids that have any.
func (h *History) Counts(ctx context.Context, kind message.Kind, ids []int64) (map[int64]Counts, error) {
	rows, err := h.pool.Query(ctx, tableOf(kind).counts, ids)
	if err != nil {
		return nil, fmt.Errorf("reading reaction counts: %w", err)
	}
	out := make(map[int64]Counts)
	var id int64
	var c string
	var v int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &c, &v}, func() error {
		out[id] = Counts{Counts: []byte(c), Version: v}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("reading reaction counts: %w", err)
	}
	return out, nil
}
