package pg

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatpipe/chatpipe/internal/message"
)

// ErrIDReused is a record whose cache id is already the id of another message in PostgreSQL:
// the id was given twice. The idempotent write would drop it as a redelivery; it is rejected
// instead, so that the caller dead-letters it with its reason and counts it.
var ErrIDReused = errors.New("cache id already holds another message")

// findReused returns the records at idx whose id is stored with other content (owner,
// recipient, channel, time, or — unless the row was edited since — user name or text), and those whose id has no row (tombstoned). A record the
// same as its row is a redelivery. It runs only when a write stored fewer rows than it was given.
func (s *Store) findReused(ctx context.Context, kind message.Kind, recs []message.Record, idx []int) ([]Rejection, []int, error) {
	ids := make([]int64, len(idx))
	for j, i := range idx {
		ids[j] = recs[i].CacheID
	}
	rows, err := s.pool.Query(ctx, tableOf(kind).existing, ids)
	if err != nil {
		return nil, nil, fmt.Errorf("reading stored %ss: %w", kind, err)
	}
	type stored struct {
		owner, recipient, channel, user, content string
		at                                       time.Time
		version                                  int64
		editedAt                                 *time.Time
	}
	have := make(map[int64]stored, len(idx))
	var id int64
	var st stored
	_, err = pgx.ForEachRow(rows, []any{&id, &st.owner, &st.recipient, &st.channel, &st.user, &st.content, &st.at, &st.version, &st.editedAt}, func() error {
		have[id] = st
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("reading stored %ss: %w", kind, err)
	}
	var out []Rejection
	var missing []int
	for _, i := range idx {
		r := &recs[i]
		st, ok := have[r.CacheID]
		if !ok {
			missing = append(missing, i)
			continue
		}
		m := r.Message
		// What the table does not store, existing reads as '': a public row has no recipient,
		// a private one no channel.
		if tableOf(kind).returnsUsers {
			m.ChannelID = ""
		} else {
			m.RecipientID = ""
		}
		// timestamptz keeps microseconds. A row edited since (a higher version: the edit may
		// even have been written first) is still this message when its author, place and
		// creation time are.
		same := st.owner == m.OwnerID && st.recipient == m.RecipientID && st.channel == m.ChannelID &&
			st.at.Equal(r.CreatedAt.Truncate(time.Microsecond))
		if same && (st.version > max(r.Version, r.CacheID) || st.user == m.Username && st.content == m.Content) {
			continue
		}
		out = append(out, Rejection{Index: i, Err: fmt.Errorf("%w (id %d, owner %q; this entry's owner %q)", ErrIDReused, r.CacheID, st.owner, m.OwnerID)})
	}
	return out, missing, nil
}
