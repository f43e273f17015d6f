// Package pg persists chat messages in PostgreSQL: the embedded, numbered schema migrations,
// the idempotent batch write with per-row isolation of bad rows, and deletions that hold
// whichever order they meet the insert in. It knows nothing of Valkey.
package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatpipe/chatpipe/internal/message"
)

//go:embed tombstone.sql
var tombstoneSQL string

// Store writes messages to PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// New returns a Store on pool.
func New(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Rejection is a record Postgres refused for its data: writing it again cannot succeed.
type Rejection struct {
	// Index is the record's position in the slice given to Persist.
	Index int
	// Err is Postgres' error.
	Err error
}

// Result says what Persist did.
type Result struct {
	// Inserted counts new rows; redelivered and tombstoned records add none.
	Inserted int64
	// Deleted counts deletions recorded.
	Deleted int
	// Edited counts the edits that changed a row (or wrote it, ahead of its insert); an edit
	// older than the stored version, or of a deleted message, changes nothing.
	Edited int64
	// Reacted counts the messages whose reaction counts a batch's reactions changed.
	Reacted int64
	// Rejected lists the records refused for their data.
	Rejected []Rejection
	// RoundTrips counts the statements sent, to show what isolation cost.
	RoundTrips int
	// Tombstoned lists the records (indexes) that made no row because their id was deleted
	// first: a deletion that met its message's insert in that order.
	Tombstoned []int
	// Removed are the private rows the deletions removed (cache id, owner and recipient), for
	// the caller to clear the users' rings.
	Removed []message.Record
}

// Persist writes the records of one stream: messages in one statement, idempotent on cache_id,
// and deletions as tombstones. When Postgres rejects the batch for its data (SQLSTATE class 22
// or 23), the batch is split in halves until the bad rows are found: k bad rows cost about
// k·log2(n) statements, and every good row is written. Any other error is returned (see
// Transient): nothing of it is known to be written, and the caller retries the whole batch.
func (s *Store) Persist(ctx context.Context, kind message.Kind, recs []message.Record) (Result, error) {
	var res Result
	var msgs, dels, edits, reacts []int
	for i, r := range recs {
		switch r.Op {
		case message.OpDelete:
			dels = append(dels, i)
		case message.OpPost:
			msgs = append(msgs, i)
		case message.OpEdit:
			edits = append(edits, i)
		case message.OpReact:
			reacts = append(reacts, i)
		default:
			return res, fmt.Errorf("record %d: %w: no write for %v", r.CacheID, ErrUnknownOp, r.Op)
		}
	}
	all := msgs
	if len(msgs) >= CopyMin {
		n, err := s.copyBatch(ctx, kind, recs, msgs)
		res.RoundTrips += 3
		switch {
		case err == nil:
			res.Inserted = n
			msgs = nil
		case !Permanent(err):
			return res, err
		}
		// A permanent error (a row already there, or one Postgres refuses): the INSERT below
		// skips the first kind and isolates the second.
	}
	t := tableOf(kind)
	if len(msgs) > 0 {
		if err := s.writeIsolated(ctx, kind, t.insert, t.row, recs, msgs, &res.Inserted, &res); err != nil {
			return res, err
		}
	}
	if int(res.Inserted)+len(res.Rejected) < len(all) {
		// Some records made no row: redeliveries, tombstoned ids, in-batch repeats — or ids
		// given to two messages, which must not pass for redeliveries.
		reused, missing, err := s.findReused(ctx, kind, recs, all)
		res.RoundTrips++
		if err != nil {
			return res, err
		}
		res.Rejected = append(res.Rejected, reused...)
		res.Tombstoned = missing
	}
	// Edits after the batch's inserts (an edit is written after its message in the stream)
	// and before its deletions (a deletion is final: the tombstone then stops any later edit).
	if len(edits) > 0 {
		if err := s.writeIsolated(ctx, kind, t.edit, t.edited, recs, edits, &res.Edited, &res); err != nil {
			return res, err
		}
	}
	// Reactions likewise: before the batch's deletions, which remove them.
	if len(reacts) > 0 {
		if err := s.writeIsolated(ctx, kind, t.react, reacted, recs, reacts, &res.Reacted, &res); err != nil {
			return res, err
		}
	}
	if len(dels) > 0 {
		removed, err := s.delete(ctx, kind, recs, dels)
		if err != nil {
			return res, err
		}
		res.Removed = removed
		res.Deleted = len(dels)
	}
	return res, nil
}

// writeIsolated runs sql, a one-statement write of the records at idx (row's values as arrays),
// adding the rows it wrote to *n. When PostgreSQL refuses the batch for its data, it splits it
// in halves until the refused records are found, and lists them in res.Rejected.
func (s *Store) writeIsolated(ctx context.Context, kind message.Kind, sql string, row func(*message.Record) []any, recs []message.Record, idx []int, n *int64, res *Result) error {
	args, err := columnArrays(row, recs, idx)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	res.RoundTrips++
	if err == nil {
		*n += tag.RowsAffected()
		return nil
	}
	err = fmt.Errorf("writing %d %ss: %w", len(idx), kind, err)
	if !Permanent(err) {
		return err
	}
	if len(idx) == 1 {
		res.Rejected = append(res.Rejected, Rejection{Index: idx[0], Err: err})
		return nil
	}
	mid := len(idx) / 2
	if err := s.writeIsolated(ctx, kind, sql, row, recs, idx[:mid], n, res); err != nil {
		return err
	}
	return s.writeIsolated(ctx, kind, sql, row, recs, idx[mid:], n, res)
}

// delete records tombstones and removes the rows, under the table lock of lock.sql. It
// returns the private rows removed, with their users.
func (s *Store) delete(ctx context.Context, kind message.Kind, recs []message.Record, idx []int) ([]message.Record, error) {
	ids := make([]int64, len(idx))
	streamIDs := make([]string, len(idx))
	for j, i := range idx {
		ids[j], streamIDs[j] = recs[i].CacheID, recs[i].StreamID
	}
	t := tableOf(kind)
	var removed []message.Record
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		removed = removed[:0]
		b := &pgx.Batch{}
		b.Queue(t.lock)
		b.Queue(tombstoneSQL, kind.String(), ids, streamIDs)
		if t.returnsUsers {
			b.Queue(t.delete, ids).Query(func(rows pgx.Rows) error {
				var r message.Record
				_, err := pgx.ForEachRow(rows, []any{&r.CacheID, &r.Message.OwnerID, &r.Message.RecipientID}, func() error {
					removed = append(removed, r)
					return nil
				})
				return err
			})
		} else {
			b.Queue(t.delete, ids)
		}
		b.Queue(t.unreact, ids)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, fmt.Errorf("deleting %d %ss: %w", len(idx), kind, err)
	}
	return removed, nil
}

// Ping checks that Postgres answers.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Connect opens a flush worker's pool on dsn.
func Connect(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	return ConnectAs(ctx, dsn, "chatpipe-flushworker", maxConns)
}

// ConnectAs opens a pool on dsn that names itself app to PostgreSQL (pg_stat_activity).
func ConnectAs(ctx context.Context, dsn, app string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse error can quote the DSN, password included: say only what is wrong.
		return nil, errors.New("DATABASE_URL is not a valid PostgreSQL URL or DSN")
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening postgres pool: %w", err)
	}
	return pool, nil
}

// Redact returns dsn without its password, for logs.
func Redact(dsn string) string {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "(unparseable DSN)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "postgres://%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	return b.String()
}

// CheckDSN validates a DATABASE_URL without ever repeating it: it may hold a password.
func CheckDSN(v string) error {
	if _, err := pgxpool.ParseConfig(v); err != nil {
		return errors.New("not a valid PostgreSQL URL or DSN")
	}
	return nil
}
