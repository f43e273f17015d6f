package streams

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Position is where a stream stands, from XINFO STREAM: its last id and how many entries were
// ever added to it. Entries are numbered by the order they were added (1, 2, …: the ordinal);
// trimming removes the lowest ordinals, so a reader that knows the ordinal of the last entry it
// saw can tell whether anything after it was removed (Gap).
type Position struct {
	// LastID is the stream's last generated id ("0-0" for a stream never written).
	LastID string
	// Added counts the entries ever added: the ordinal of LastID.
	Added int64
	// Length is the number of entries the stream holds.
	Length int64
	// MaxDeleted is the highest id removed by XDEL ("0-0" when none).
	MaxDeleted string
}

// FirstOrdinal is the ordinal of the oldest entry the stream holds (Added+1 when it holds none),
// assuming entries leave only by trimming, from the front.
func (p Position) FirstOrdinal() int64 { return p.Added - p.Length + 1 }

// Gap reports whether an entry after the one with id and ordinal ord is gone from the stream: a
// reader resuming after it would miss something. An entry XDELed after id counts as a gap too.
func (p Position) Gap(id string, ord int64) bool {
	return p.FirstOrdinal() > ord+1 || CompareIDs(p.MaxDeleted, id) > 0
}

// StreamPosition reads the position of stream; a stream that does not exist is at "0-0", 0.
func StreamPosition(ctx context.Context, c valkey.Client, stream string) (Position, error) {
	m, err := c.Do(ctx, c.B().XinfoStream().Key(stream).Build()).AsMap()
	if err != nil {
		if isNoSuchKey(err) {
			return Position{LastID: "0-0", MaxDeleted: "0-0"}, nil
		}
		return Position{}, err
	}
	var p Position
	str := func(k string) string { v := m[k]; s, _ := v.ToString(); return s }
	num := func(k string) int64 { v := m[k]; n, _ := v.AsInt64(); return n }
	p.LastID, p.MaxDeleted = str("last-generated-id"), str("max-deleted-entry-id")
	p.Added, p.Length = num("entries-added"), num("length")
	if p.LastID == "" || p.MaxDeleted == "" {
		return p, fmt.Errorf("XINFO STREAM %s: no last-generated-id or max-deleted-entry-id (Valkey 7 or later needed)", stream)
	}
	return p, nil
}

// isNoSuchKey recognises XINFO's answer for a missing stream ("ERR no such key" in Valkey 8,
// "no such key" as valkey-go passes it on).
func isNoSuchKey(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.Contains(verr.Error(), "no such key")
}

// ReadAfter returns up to count entries of stream after id (exclusive), oldest first.
func ReadAfter(ctx context.Context, c valkey.Client, stream, id string, count int) ([]Entry, error) {
	xs, err := c.Do(ctx, c.B().Xrange().Key(stream).Start("("+id).End("+").Count(int64(count)).Build()).AsXRange()
	if err != nil {
		return nil, err
	}
	out := make([]Entry, len(xs))
	for i, x := range xs {
		out[i] = Entry{ID: x.ID, Fields: x.FieldValues}
	}
	return out, nil
}

// Follow waits up to block for entries of stream after id (XREAD BLOCK, outside any group, so
// that it never holds back trimming) and returns up to count of them; none when block passed.
// Cancelling ctx ends the wait at once: valkey-go then unblocks the connection (CLIENT UNBLOCK)
// and keeps it, or closes it. Without that, a call with a deadline waits out its block, and a
// shutdown waited up to 5 s for its readers.
func Follow(ctx context.Context, c valkey.Client, stream, id string, count int, block time.Duration) ([]Entry, error) {
	cmd := c.B().Xread().Count(int64(count)).Block(block.Milliseconds()).Streams().Key(stream).Id(id).Build().UnblockOnCancel()
	res, err := c.Do(ctx, cmd).AsXRead()
	if valkey.IsValkeyNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	xs := res[stream]
	out := make([]Entry, len(xs))
	for i, x := range xs {
		out[i] = Entry{ID: x.ID, Fields: x.FieldValues}
	}
	return out, nil
}
