package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestReactions: toggles count exactly, in first-added order, under their own version; a
// repeat changes nothing; the refusals write nothing; every change is one entry on the
// message's stream that decodes to the toggle and the counts; a message whose reactions are
// not hot is looked up and loaded. Both layouts.
func TestReactions(t *testing.T) {
	t.Parallel()
	for _, layout := range testenv.Layouts(t, "rx:") {
		t.Run(layout.Name(), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			c := testenv.StartValkey(t).Client(t)
			st, err := store.Open(c, store.Config{Layout: layout, DefaultRate: unlimited, MaxReactions: 2})
			if err != nil {
				t.Fatal(err)
			}
			s := storeCase{Store: st, c: c, layout: layout}
			id := s.send(t, withChannel(pub("alice", "hello"), "room")).CacheID
			react := func(user, emoji string, add bool) (store.Reacted, error) {
				return s.React(ctx, store.React{Kind: message.Public, CacheID: id, ChannelID: "room", UserID: user, Emoji: emoji, Add: add})
			}
			r, _ := layout.RouteOf(message.Public, "room", id)
			entries := func() int64 { n, _ := testenv.Do(t, c, "XLEN", r.Stream).AsInt64(); return n }
			steps := []struct {
				user, emoji string
				add         bool
				want        string
				changed     bool
			}{
				{"alice", "👍", true, `[{"emoji":"👍","count":1}]`, true},
				{"alice", "👍", true, `[{"emoji":"👍","count":1}]`, false},
				{"bob", "👍", true, `[{"emoji":"👍","count":2}]`, true},
				{"bob", ":tada:", true, `[{"emoji":"👍","count":2},{"emoji":":tada:","count":1}]`, true},
				{"carol", `"quoted\`, false, `[{"emoji":"👍","count":2},{"emoji":":tada:","count":1}]`, false},
				{"alice", "👍", false, `[{"emoji":"👍","count":1},{"emoji":":tada:","count":1}]`, true},
				{"bob", "👍", false, `[{"emoji":":tada:","count":1}]`, true},
				{"bob", `"quoted\`, true, `[{"emoji":":tada:","count":1},{"emoji":"\"quoted\\","count":1}]`, true},
			}
			var version int64
			for i, st := range steps {
				before := entries()
				got, err := react(st.user, st.emoji, st.add)
				if err != nil || string(got.Counts) != st.want || got.Changed != st.changed {
					t.Fatalf("step %d %+v: %+v %s (%v), want %s changed %v", i, st, got, got.Counts, err, st.want, st.changed)
				}
				switch {
				case st.changed && (got.Version <= version || got.Version <= id || entries() != before+1):
					t.Fatalf("step %d: version %d after %d, %d entries after %d: want a higher version and one entry", i, got.Version, version, entries(), before)
				case !st.changed && (got.Version != version || entries() != before):
					t.Fatalf("step %d changed nothing but moved the version to %d or wrote an entry", i, got.Version)
				}
				version = got.Version
			}
			last, err := testenv.Do(t, c, "XREVRANGE", r.Stream, "+", "-", "COUNT", "1").AsXRange()
			if err != nil || len(last) != 1 {
				t.Fatal(last, err)
			}
			rec, err := message.DecodeEntry(message.KindMessage, message.DefaultChannel, last[0].ID, last[0].FieldValues)
			if err != nil || rec.Op != message.OpReact || rec.Reaction.UserID != "bob" || !rec.Reaction.Add() ||
				rec.Reaction.Emoji != `"quoted\` || rec.Version != version || rec.Message.ChannelID != "room" {
				t.Fatalf("the last entry decodes to %+v %+v (%v)", rec, rec.Reaction, err)
			}

			// Refusals: a third distinct emoji, another channel's path, a message never issued.
			before := entries()
			if _, err := react("dave", "🔥", true); !errors.Is(err, store.ErrTooManyReactions) {
				t.Errorf("a third distinct emoji where 2 are allowed: %v", err)
			}
			if _, err := s.React(ctx, store.React{Kind: message.Public, CacheID: id, ChannelID: "lobby", UserID: "dave", Emoji: "🔥", Add: true}); !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrLookup) {
				t.Errorf("a reaction by another channel's path: %v", err)
			}
			if entries() != before {
				t.Errorf("refusals wrote %d entries", entries()-before)
			}

			// A message whose reactions left Valkey and whose index entry was trimmed (it was
			// flushed): the script asks for a look-up, then takes what PostgreSQL holds.
			old := s.send(t, withChannel(pub("alice", "old"), "room")).CacheID
			or, _ := layout.RouteOf(message.Public, "room", old)
			testenv.Do(t, c, "DEL", keyspace.BacklogIndex(or.Stream, message.ChannelTimeline("room")))
			x := store.React{Kind: message.Public, CacheID: old, ChannelID: "room", UserID: "erin", Emoji: "👍", Add: true}
			if _, err := s.React(ctx, x); !errors.Is(err, store.ErrLookup) {
				t.Fatalf("a reaction to a message out of Valkey: %v, want ErrLookup", err)
			}
			x.Loaded = &store.Loaded{Counts: []message.Count{{Emoji: "👍", Count: 3}}, Version: old + 5, Mine: []store.Mine{{Emoji: "👍", Version: old + 4}}}
			if got, err := s.React(ctx, x); err != nil || got.Changed || string(got.Counts) != `[{"emoji":"👍","count":3}]` {
				t.Fatalf("erin's 👍 that PostgreSQL holds: %+v %s (%v), want no change", got, got.Counts, err)
			}
			x.Loaded, x.UserID = nil, "fay" // a user not loaded yet: looked up again
			if _, err := s.React(ctx, x); !errors.Is(err, store.ErrLookup) {
				t.Fatalf("fay's first reaction to a loaded message: %v, want ErrLookup", err)
			}
			x.Loaded = &store.Loaded{Version: old + 5}
			if got, err := s.React(ctx, x); err != nil || !got.Changed || string(got.Counts) != `[{"emoji":"👍","count":4}]` {
				t.Fatalf("fay's 👍: %+v %s (%v)", got, got.Counts, err)
			}

			// Private: only the two users react; a deletion removes the reactions.
			p := s.send(t, priv("gus", "hal", "psst")).CacheID
			px := store.React{Kind: message.Private, CacheID: p, UserID: "ivy", Emoji: "👍", Add: true}
			if _, err := s.React(ctx, px); !errors.Is(err, store.ErrLookup) {
				t.Errorf("ivy, neither user, finds nothing in her own timeline: %v, want ErrLookup", err)
			}
			px.UserID = "hal"
			got, err := s.React(ctx, px)
			if err != nil || !got.Changed {
				t.Fatalf("hal's reaction: %+v (%v)", got, err)
			}
			px.UserID = "ivy"
			px.Loaded = &store.Loaded{OwnerID: "gus", RecipientID: "hal"}
			if _, err := s.React(ctx, px); !errors.Is(err, store.ErrNotParticipant) {
				t.Errorf("ivy with the message loaded: %v, want ErrNotParticipant", err)
			}
			pr, _ := layout.RouteOf(message.Private, "", p)
			last, _ = testenv.Do(t, c, "XREVRANGE", pr.Stream, "+", "-", "COUNT", "1").AsXRange()
			if rec, err := message.DecodeEntry(message.KindPrivateMessage, "", last[0].ID, last[0].FieldValues); err != nil ||
				rec.Message.OwnerID != "gus" || rec.Message.RecipientID != "hal" {
				t.Errorf("the private reaction's entry: %+v (%v), want it to name gus and hal", rec, err)
			}
			if err := s.Delete(ctx, message.Ref{Kind: message.Private, CacheID: p, OwnerID: "gus", RecipientID: "hal"}); err != nil {
				t.Fatal(err)
			}
			if n, _ := testenv.Do(t, c, "EXISTS", keyspace.Reactions(pr.Stream, p)).AsInt64(); n != 0 {
				t.Error("the deleted message's reactions are still in Valkey")
			}
			px.UserID, px.Loaded = "hal", nil
			if _, err := s.React(ctx, px); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a reaction to a deleted message: %v, want ErrNotFound", err)
			}
		})
	}
}

// TestReactionBacklogCap: a toggle into a stream at its cap is refused and writes nothing, alone
// or coalesced with others.
func TestReactionBacklogCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := testenv.StartValkey(t).Client(t)
	layout, _ := keyspace.New("cap:")
	st, err := store.Open(c, store.Config{Layout: layout, DefaultRate: unlimited, BacklogCap: 3})
	if err != nil {
		t.Fatal(err)
	}
	s := storeCase{Store: st, c: c, layout: layout}
	id := s.send(t, withChannel(pub("alice", "hi"), "room")).CacheID
	x := func(user string) store.React {
		return store.React{Kind: message.Public, CacheID: id, ChannelID: "room", UserID: user, Emoji: "👍", Add: true}
	}
	outs := st.ReactMany(ctx, []store.React{x("a"), x("b"), x("c"), x("a")})
	if outs[0].Err != nil || outs[1].Err != nil || !errors.Is(outs[2].Err, store.ErrBacklogFull) || outs[3].Err != nil || outs[3].Changed {
		t.Fatalf("four toggles into a stream with room for two: %+v", outs)
	}
	if _, err := st.React(ctx, x("d")); !errors.Is(err, store.ErrBacklogFull) {
		t.Errorf("a toggle into a full stream: %v", err)
	}
	r, _ := layout.RouteOf(message.Public, "room", id)
	if n, _ := testenv.Do(t, c, "XLEN", r.Stream).AsInt64(); n != 3 {
		t.Errorf("the stream holds %d entries, want the message and two toggles", n)
	}
}
