package streams

import (
	"context"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// DeadLetters lists, replays and purges the dead-letter streams of flush streams.
type DeadLetters struct {
	c       valkey.Client
	timeout time.Duration
}

// NewDeadLetters returns the dead-letter operations on c.
func NewDeadLetters(c valkey.Client) *DeadLetters {
	return &DeadLetters{c: c, timeout: 5 * time.Second}
}

// DeadLetterFields are the fields a dead letter adds to the original entry's: why it failed,
// the original's id, how often it was delivered, by which consumer, and when.
var DeadLetterFields = [...]string{"reason", "error", "original_id", "deliveries", "consumer", "failed_at"}

// DeadLetter is one dead-letter entry: the original's fields plus DeadLetterFields.
type DeadLetter struct {
	ID     string
	Fields map[string]string
}

// Len returns how many dead letters fs has.
func (d *DeadLetters) Len(ctx context.Context, fs keyspace.FlushStream) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return d.c.Do(ctx, d.c.B().Xlen().Key(fs.DeadLetter).Build()).AsInt64()
}

// List returns up to count dead letters of fs, oldest first, from the id after `after`
// ("" for the start).
func (d *DeadLetters) List(ctx context.Context, fs keyspace.FlushStream, after string, count int) ([]DeadLetter, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	start := "-"
	if after != "" {
		start = "(" + after
	}
	xs, err := d.c.Do(ctx, d.c.B().Xrange().Key(fs.DeadLetter).Start(start).End("+").Count(int64(count)).Build()).AsXRange()
	if err != nil {
		return nil, fmt.Errorf("listing dead letters: %w", err)
	}
	out := make([]DeadLetter, len(xs))
	for i, x := range xs {
		out[i] = DeadLetter{ID: x.ID, Fields: x.FieldValues}
	}
	return out, nil
}

// Replay puts the dead letter id back on its flush stream fs (every field of the original entry,
// none of DeadLetterFields), atomically with its removal from the dead-letter stream. It returns
// the new stream entry's id, or "" when there is no such dead letter.
func (d *DeadLetters) Replay(ctx context.Context, fs keyspace.FlushStream, id string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	newID, err := replayScript.Exec(ctx, d.c, []string{fs.DeadLetter, fs.Stream}, append([]string{id}, DeadLetterFields[:]...)).ToString()
	if err != nil {
		return "", fmt.Errorf("replaying dead letter %s: %w", id, err)
	}
	return newID, nil
}

// Purge deletes the dead letters ids and returns how many existed.
func (d *DeadLetters) Purge(ctx context.Context, fs keyspace.FlushStream, ids ...string) (int64, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	n, err := d.c.Do(ctx, d.c.B().Xdel().Key(fs.DeadLetter).Id(ids...).Build()).AsInt64()
	if err != nil {
		return 0, fmt.Errorf("purging dead letters: %w", err)
	}
	return n, nil
}

// DLQOp is what Apply does to a dead letter.
type DLQOp string

// The operations on dead letters.
const (
	// Replay puts a dead letter back on its flush stream.
	OpReplay DLQOp = "replay"
	// Purge deletes a dead letter for good.
	OpPurge DLQOp = "purge"
)

// Past is the operation's past tense, for reports: replayed, purged.
func (op DLQOp) Past() string {
	if op == OpReplay {
		return "replayed"
	}
	return "purged"
}

// ApplyIDs replays or purges each of ids in the first of fss that holds it (a kind's
// partitions), and returns how many were applied and how many no stream held.
func (d *DeadLetters) ApplyIDs(ctx context.Context, fss []keyspace.FlushStream, op DLQOp, ids []string) (done, missing int, err error) {
	for _, id := range ids {
		found := false
		for _, fs := range fss {
			ok, err := d.Apply(ctx, fs, op, id)
			if err != nil {
				return done, missing, err
			}
			if ok {
				found = true
				break
			}
		}
		if found {
			done++
		} else {
			missing++
		}
	}
	return done, missing, nil
}

// Apply replays or purges the dead letter id of fs; false when fs has no such dead letter.
func (d *DeadLetters) Apply(ctx context.Context, fs keyspace.FlushStream, op DLQOp, id string) (bool, error) {
	switch op {
	case OpReplay:
		newID, err := d.Replay(ctx, fs, id)
		return newID != "", err
	case OpPurge:
		n, err := d.Purge(ctx, fs, id)
		return n == 1, err
	}
	return false, fmt.Errorf("unknown dead-letter operation %q", op)
}

// ApplyAllOptions bounds ApplyAll.
type ApplyAllOptions struct {
	// Limit is the most dead letters to apply to; 0: no limit.
	Limit int
	// UpTo, when set, stops at the dead letters after this id: "all up to the newest one shown".
	UpTo string
	// Match, when set, picks the dead letters to apply to.
	Match func(DeadLetter) bool
	// Progress, when set, is called after each dead letter with the count so far.
	Progress func(done int)
}

// ApplyAll replays or purges the dead letters of fs, oldest first, page by page, and returns
// how many it applied to.
func (d *DeadLetters) ApplyAll(ctx context.Context, fs keyspace.FlushStream, op DLQOp, o ApplyAllOptions) (int, error) {
	done, after := 0, ""
	for {
		page, err := d.List(ctx, fs, after, 500)
		if err != nil {
			return done, err
		}
		if len(page) == 0 {
			return done, nil
		}
		for _, l := range page {
			if o.UpTo != "" && CompareIDs(l.ID, o.UpTo) > 0 {
				return done, nil
			}
			after = l.ID
			if o.Match != nil && !o.Match(l) {
				continue
			}
			if o.Limit > 0 && done >= o.Limit {
				return done, nil
			}
			if _, err := d.Apply(ctx, fs, op, l.ID); err != nil {
				return done, err
			}
			done++
			if o.Progress != nil {
				o.Progress(done)
			}
		}
	}
}

// Reason is why the dead letter was written: its reason field (decode, rejected, poison,
// id_reused), or for a dead letter written before that field existed, "unknown".
func (l DeadLetter) Reason() string {
	if r := l.Fields["reason"]; r != "" {
		return r
	}
	return "unknown"
}
