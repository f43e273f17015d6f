package pg_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
)

// reaction is the record of a toggle at version v, with the counts after it.
func reaction(id, v int64, user, emoji string, add bool, counts string) message.Record {
	op := message.ReactRemove
	if add {
		op = message.ReactAdd
	}
	x := &message.Reaction{Emoji: emoji, UserID: user, Op: op, Reactions: []byte(counts), Version: v}
	return message.Record{StreamID: fmt.Sprintf("%d-3", 1700000000000+v), CacheID: id, Op: message.OpReact,
		Reaction: x, Version: v, Reactions: x.Reactions, ReactionsVersion: v, Message: message.Message{ChannelID: message.DefaultChannel}}
}

// TestReactionsInAnyOrder: whatever order and batches a message's create, reactions and
// deletion reach PostgreSQL in (two workers, reclaims, replays), the rows end as the newest
// toggle of each user and emoji says, the counts as the newest reaction's, and history reads
// them with the message; a deletion removes them for good.
func TestReactionsInAnyOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	h := pg.NewHistory(b.pool)
	const last = `[{"emoji":"👍","count":1},{"emoji":"❤","count":1}]`
	toggles := func(id int64) []message.Record {
		return []message.Record{
			reaction(id, id+1, "ann", "👍", true, `[{"emoji":"👍","count":1}]`),
			reaction(id, id+2, "bob", "👍", true, `[{"emoji":"👍","count":2}]`),
			reaction(id, id+3, "ann", "👍", false, `[{"emoji":"👍","count":1}]`),
			reaction(id, id+4, "ann", "❤", true, last),
		}
	}
	rng := rand.New(rand.NewPCG(7, 34))
	for i := range 40 {
		for _, kind := range message.Kinds {
			id := int64(1000*i + 10 + int(kind))
			recs := append(toggles(id), rec(id, "created"))
			if i%4 == 3 {
				recs = append(recs, del(id))
			}
			recs = append(recs, recs[rng.IntN(len(recs))]) // a redelivery
			rng.Shuffle(len(recs), func(a, b int) { recs[a], recs[b] = recs[b], recs[a] })
			for len(recs) > 0 {
				n := 1 + rng.IntN(len(recs))
				if res, err := b.store.Persist(ctx, kind, recs[:n]); err != nil || len(res.Rejected) > 0 {
					t.Fatalf("%v batch: %v, rejected %v", kind, err, res.Rejected)
				}
				recs = recs[n:]
			}
			got, ok, err := h.One(ctx, kind, id)
			if err != nil {
				t.Fatal(err)
			}
			users, err := h.Reactors(ctx, kind, id, "👍", 0, 10)
			if err != nil {
				t.Fatal(err)
			}
			counts, version, mine, _, err := h.Reactions(ctx, kind, id, "ann")
			if err != nil {
				t.Fatal(err)
			}
			if i%4 == 3 {
				if ok || len(users) > 0 || string(counts) != "[]" || version != 0 {
					t.Errorf("%v %d deleted: row %t, 👍 by %v, counts %s at %d: want nothing left", kind, id, ok, users, counts, version)
				}
				continue
			}
			if !ok || string(got.Reactions) != last || got.ReactionsVersion != id+4 {
				t.Errorf("%v %d: %s at %d (row %t), want %s at %d", kind, id, got.Reactions, got.ReactionsVersion, ok, last, id+4)
			}
			if len(users) != 1 || users[0].UserID != "bob" || string(counts) != last || version != id+4 || !slices.Equal(mine, []string{"❤"}) {
				t.Errorf("%v %d: 👍 by %v; counts %s at %d, ann's %v", kind, id, users, counts, version, mine)
			}
			page, err := h.Page(ctx, pg.PageQuery{Timeline: message.ChannelTimeline(message.DefaultChannel), Cursor: id - 1, Limit: 1})
			if kind == message.Public && (err != nil || len(page) != 1 || string(page[0].Reactions) != last) {
				t.Errorf("the history page of %d: %+v (%v), want its counts", id, page, err)
			}
		}
	}
	m, err := h.Mine(ctx, message.Public, []int64{10, 1010, 3010}, "ann")
	if err != nil || len(m) != 2 || !m[10]["❤"] || m[10]["👍"] || m[3010] != nil {
		t.Errorf("ann's emoji on three messages, the last deleted: %v (%v)", m, err)
	}
}
