package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// DeadLetters lists, replays and purges the dead-letter streams.
type DeadLetters struct {
	c       valkey.Client
	keys    keyspace.Keys
	timeout time.Duration
}

// NewDeadLetters returns the dead-letter operations on c.
func NewDeadLetters(c valkey.Client, keys keyspace.Keys) *DeadLetters {
	return &DeadLetters{c: c, keys: keys, timeout: 5 * time.Second}
}

// DeadLetter is one dead-letter entry: the original's fields plus error, original_id,
// deliveries, consumer and failed_at.
type DeadLetter struct {
	ID     string
	Fields map[string]string
}

// Len returns how many dead letters kind has.
func (d *DeadLetters) Len(ctx context.Context, kind keyspace.Kind) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return d.c.Do(ctx, d.c.B().Xlen().Key(d.keys.DeadLetter(kind)).Build()).AsInt64()
}

// List returns up to count dead letters of kind, oldest first, from the id after `after`
// ("" for the start).
func (d *DeadLetters) List(ctx context.Context, kind keyspace.Kind, after string, count int) ([]DeadLetter, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	xs, err := d.c.Do(ctx, d.c.B().Xrange().Key(d.keys.DeadLetter(kind)).Start(start).End("+").Count(int64(count)).Build()).AsXRange()
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	out := make([]DeadLetter, len(xs))
	for i, x := range xs {
		out[i] = DeadLetter{ID: x.ID, Fields: x.FieldValues}
	}
	return out, nil
}

// Replay puts the dead letter id back on kind's flush stream (its cache_id, kind and payload),
// atomically with its removal from the dead-letter stream. It returns the new stream entry's
// id, or "" when there is no such dead letter.
func (d *DeadLetters) Replay(ctx context.Context, kind keyspace.Kind, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	newID, err := replayScript.Exec(ctx, d.c, []string{d.keys.DeadLetter(kind), d.keys.Stream(kind)}, []string{id}).ToString()
	if err != nil {
		return "", fmt.Errorf("replaying dead letter %s: %w", id, err)
	}
	return newID, nil
}

// Purge deletes the dead letters ids and returns how many existed.
func (d *DeadLetters) Purge(ctx context.Context, kind keyspace.Kind, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	n, err := d.c.Do(ctx, d.c.B().Xdel().Key(d.keys.DeadLetter(kind)).Id(ids...).Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("purging dead letters: %w", err)
	}
	return n, nil
}
