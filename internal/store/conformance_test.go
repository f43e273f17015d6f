package store_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// storeCase is one layout's store under test, on a server of its own.
type storeCase struct {
	*store.Store
	c      valkey.Client
	layout keyspace.Layout
}

// TestStoreConformance runs one suite against both layouts' stores (store.Open), each case on a
// fresh real Valkey: ids, rings, self-DMs, client_msg_id retries, the backlog cap, the rate
// limit and its settings, edits, batches and deletions.
func TestStoreConformance(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  store.Config
		run  func(t *testing.T, s storeCase)
	}{
		{"rings hold the newest, oldest first", store.Config{RecentSize: 3}, func(t *testing.T, s storeCase) {
			var pubIDs, privIDs []int64
			for i := range 5 {
				pubIDs = append(pubIDs, s.send(t, pub("alice", strconv.Itoa(i))).CacheID)
				privIDs = append(privIDs, s.send(t, priv("alice", "bob", strconv.Itoa(i))).CacheID)
			}
			if !slices.IsSorted(pubIDs) || !slices.IsSorted(privIDs) {
				t.Fatalf("one owner's ids do not rise: %v %v", pubIDs, privIDs)
			}
			s.wantRecent(t, message.ChannelTimeline(message.DefaultChannel), pubIDs[2:])
			s.wantRecent(t, message.PrivateTimeline("alice"), privIDs[2:])
			s.wantRecent(t, message.PrivateTimeline("bob"), privIDs[2:])
			s.wantRecent(t, message.PrivateTimeline("nobody"), nil)
		}},
		{"a self-DM is stored once", store.Config{}, func(t *testing.T, s storeCase) {
			id := s.send(t, priv("carol", "carol", "note")).CacheID
			s.wantRecent(t, message.PrivateTimeline("carol"), []int64{id})
			if n := s.streamLen(t, message.Private, "carol", "carol"); n != 1 {
				t.Errorf("the stream holds %d entries, want 1", n)
			}
		}},
		{"a client_msg_id retry gets the first id", store.Config{}, func(t *testing.T, s storeCase) {
			m := pub("alice", "once")
			m.ClientMsgID = "c-1"
			first, again := s.send(t, m), s.send(t, m)
			if first.Duplicate || !again.Duplicate || again.CacheID != first.CacheID {
				t.Fatalf("first %+v, retry %+v: want the retry to be a duplicate of the first", first, again)
			}
			if n := s.streamLen(t, message.Public, "alice", ""); n != 1 {
				t.Errorf("the stream holds %d entries, want 1", n)
			}
			other := pub("bob", "mine")
			other.ClientMsgID = "c-1" // another owner's: another message
			if r := s.send(t, other); r.Duplicate || r.CacheID == first.CacheID {
				t.Fatalf("bob's message with alice's client id: %+v", r)
			}
		}},
		{"the backlog cap refuses, takes no id, costs no quota", store.Config{BacklogCap: 2}, func(t *testing.T, s storeCase) {
			s.setRate(t, store.RateLimit{Limit: 3, WindowSeconds: 60, Algorithm: store.Fixed})
			s.send(t, pub("alice", "1"))
			last := s.send(t, pub("alice", "2"))
			r, _ := s.layout.RouteOf(message.Public, "", last.CacheID)
			counter := func() string { v, _ := testenv.Do(t, s.c, "GET", r.Counter).ToString(); return v }
			before := counter()
			if _, err := s.Enqueue(context.Background(), pub("alice", "3")); !errors.Is(err, store.ErrBacklogFull) {
				t.Fatalf("a third message into a stream capped at 2: %v, want ErrBacklogFull", err)
			}
			if after := counter(); after != before {
				t.Errorf("the id counter moved from %s to %s: the refused message took an id", before, after)
			}
			if n := s.streamLen(t, message.Public, "alice", ""); n != 2 {
				t.Errorf("the stream holds %d entries, want the first two untouched", n)
			}
			testenv.Do(t, s.c, "XTRIM", r.Stream, "MAXLEN", "0") // the workers made room
			if again := s.send(t, pub("alice", "3")); again.CacheID <= last.CacheID {
				t.Fatalf("id %d after %d", again.CacheID, last.CacheID)
			}
		}},
		{"the rate limit and its settings", store.Config{}, func(t *testing.T, s storeCase) {
			want := store.RateLimit{Limit: 2, WindowSeconds: 60, Algorithm: store.Fixed}
			s.setRate(t, want)
			if got, err := s.RateLimit(context.Background()); err != nil || got != want {
				t.Fatalf("settings %+v (%v), want %+v", got, err, want)
			}
			s.send(t, pub("alice", "1"))
			s.send(t, pub("alice", "2"))
			_, err := s.Enqueue(context.Background(), pub("alice", "3"))
			if rle, ok := errors.AsType[*store.RateLimitedError](err); !ok || rle.RetryAfter <= 0 {
				t.Fatalf("the third message: %v, want a RateLimitedError with a delay", err)
			}
			s.send(t, pub("bob", "1")) // others are not limited
		}},
		{"an edit replaces the ring entry at a higher version; others' edits and stale ones are refused", store.Config{}, func(t *testing.T, s storeCase) {
			ctx := context.Background()
			// The message as ingest encodes it (message.Message's JSON, whose field order the
			// edit script splices).
			first := message.Message{OwnerID: "alice", ChannelID: "room", Username: "alice", Content: "first", CreatedAt: "2026-12-07T09:00:00Z"}
			id := s.send(t, store.Message{OwnerID: "alice", ChannelID: "room", Data: first.JSON()}).CacheID
			edit := func(owner, content string, ifMatch int64) (int64, error) {
				return s.Edit(ctx, store.Edit{Kind: message.Public, CacheID: id, IfMatch: ifMatch,
					Message: message.Message{OwnerID: owner, ChannelID: "room", Content: content, EditedAt: "2026-12-07T10:00:00Z"}})
			}
			v1, err := edit("alice", "second", 0)
			if err != nil || v1 <= id {
				t.Fatalf("edit: version %d, %v; want above the id %d", v1, err, id)
			}
			v2, err := edit("alice", "third", v1)
			if err != nil || v2 <= v1 {
				t.Fatalf("edit at If-Match %d: version %d, %v", v1, v2, err)
			}
			if _, err := edit("alice", "stale", v1); !errors.Is(err, store.ErrVersionMismatch) {
				t.Fatalf("edit at a stale If-Match: %v, want ErrVersionMismatch", err)
			}
			if _, err := edit("mallory", "mine now", 0); !errors.Is(err, store.ErrNotAuthor) {
				t.Fatalf("another user's edit: %v, want ErrNotAuthor", err)
			}
			entries, err := s.Recent(ctx, message.ChannelTimeline("room"), 0)
			if err != nil || len(entries) != 1 || !strings.Contains(entries[0], `"content":"third"`) ||
				!strings.Contains(entries[0], `"version":`+strconv.FormatInt(v2, 10)) {
				t.Fatalf("the ring after the edits: %q, %v; want one entry, content third at version %d", entries, err, v2)
			}
			if err := s.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "room", CacheID: id}); err != nil {
				t.Fatal(err)
			}
			if _, err := edit("alice", "after the delete", 0); err == nil {
				t.Fatal("an edit of a deleted message was taken")
			}
		}},
		{"a batch answers each message, in order", store.Config{}, func(t *testing.T, s storeCase) {
			s.setRate(t, store.RateLimit{Limit: 2, WindowSeconds: 60, Algorithm: store.Fixed})
			msgs := []store.Message{pub("a", "1"), pub("b", "1"), pub("a", "2"), pub("a", "3"), pub("b", "2")}
			msgs[4].ClientMsgID = "x"
			out := s.EnqueueMany(context.Background(), message.Public, msgs)
			seen := map[int64]bool{}
			for i, o := range out {
				switch {
				case i == 3 && !errors.Is(o.Err, store.ErrRateLimited):
					t.Errorf("message %d: %v, want rate limited", i, o.Err)
				case i != 3 && (o.Err != nil || o.CacheID < 1 || seen[o.CacheID]):
					t.Errorf("message %d: %+v, want a new id", i, o)
				}
				seen[o.CacheID] = true
			}
		}},
		{"rings of idle channels and users expire", store.Config{RingTTL: 300 * time.Millisecond}, func(t *testing.T, s storeCase) {
			s.send(t, withChannel(pub("alice", "1"), "quiet-room"))
			s.send(t, priv("ann", "bob", "psst"))
			rings := []message.Timeline{message.ChannelTimeline("quiet-room"), message.PrivateTimeline("ann"), message.PrivateTimeline("bob")}
			for _, tl := range rings {
				if got, _ := s.Recent(context.Background(), tl, 0); len(got) != 1 {
					t.Fatalf("%+v's ring holds %d, want 1", tl, len(got))
				}
			}
			testenv.WaitFor(t, "the idle rings to expire", 5*time.Second, func() bool {
				for _, tl := range rings {
					if got, _ := s.Recent(context.Background(), tl, 0); len(got) != 0 {
						return false
					}
				}
				return true
			})
		}},
		{"backlog indexes name each timeline's messages", store.Config{}, func(t *testing.T, s storeCase) {
			a1 := s.send(t, withChannel(pub("alice", "1"), "team-42.general"))
			a2 := s.send(t, withChannel(pub("bob", "2"), "team-42.general"))
			s.send(t, withChannel(pub("bob", "3"), "Org:Room~1"))
			s.send(t, pub("carol", "4")) // the default channel
			s.send(t, priv("ann", "bob", "psst"))
			s.send(t, priv("carol", "carol", "note"))
			for _, c := range []struct {
				tl   message.Timeline
				via  [3]string // a message of the timeline: kind's owner, recipient, channel
				want int64
			}{
				{message.ChannelTimeline("team-42.general"), [3]string{"alice", "", "team-42.general"}, 2},
				{message.ChannelTimeline("Org:Room~1"), [3]string{"bob", "", "Org:Room~1"}, 1},
				{message.ChannelTimeline(s.layout.DefaultChannel()), [3]string{"carol", "", ""}, 1},
				{message.PrivateTimeline("ann"), [3]string{"ann", "bob", ""}, 1},
				{message.PrivateTimeline("bob"), [3]string{"ann", "bob", ""}, 1},
				{message.PrivateTimeline("carol"), [3]string{"carol", "carol", ""}, 1},
			} {
				kind := message.Public
				if c.tl.Kind == message.Private {
					kind = message.Private
				}
				stream := s.layout.Route(kind, c.via[0], c.via[1], c.via[2]).Stream
				if n, _ := testenv.Do(t, s.c, "ZCARD", keyspace.BacklogIndex(stream, c.tl)).AsInt64(); n != c.want {
					t.Errorf("%+v's backlog index holds %d, want %d", c.tl, n, c.want)
				}
			}
			// Scored by cache id, named by stream id.
			stream := s.layout.Route(message.Public, "alice", "", "team-42.general").Stream
			ix := keyspace.BacklogIndex(stream, message.ChannelTimeline("team-42.general"))
			for _, id := range []int64{a1.CacheID, a2.CacheID} {
				v := strconv.FormatInt(id, 10)
				if n, _ := testenv.Do(t, s.c, "ZCOUNT", ix, v, v).AsInt64(); n != 1 {
					t.Errorf("the channel's index has %d members scored %d, want 1", n, id)
				}
			}
			members, _ := testenv.Do(t, s.c, "ZRANGE", ix, "0", "-1").AsStrSlice()
			for _, sid := range members {
				if xs, _ := testenv.Do(t, s.c, "XRANGE", stream, sid, sid).AsXRange(); len(xs) != 1 {
					t.Errorf("index member %q names no entry of the stream", sid)
				}
			}
		}},
		{"a channel's ring holds its messages only", store.Config{}, func(t *testing.T, s storeCase) {
			a1 := s.send(t, withChannel(pub("alice", "1"), "team-42.general")).CacheID
			b1 := s.send(t, withChannel(pub("bob", "1"), "Org:Room~1")).CacheID
			a2 := s.send(t, withChannel(pub("carol", "2"), "team-42.general")).CacheID
			s.wantRecent(t, message.ChannelTimeline("team-42.general"), []int64{a1, a2})
			s.wantRecent(t, message.ChannelTimeline("Org:Room~1"), []int64{b1})
			s.wantRecent(t, message.ChannelTimeline(message.DefaultChannel), nil)
			if err := s.Delete(context.Background(), message.Ref{Kind: message.Public, ChannelID: "team-42.general", CacheID: a1}); err != nil {
				t.Fatal(err)
			}
			s.wantRecent(t, message.ChannelTimeline("team-42.general"), []int64{a2})
		}},
		{"deletions leave the rings and the stream carries them", store.Config{}, func(t *testing.T, s storeCase) {
			ctx := context.Background()
			keep, gone := s.send(t, pub("alice", "keep")), s.send(t, pub("alice", "gone"))
			if err := s.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: gone.CacheID}); err != nil {
				t.Fatal(err)
			}
			s.wantRecent(t, message.ChannelTimeline(message.DefaultChannel), []int64{keep.CacheID})
			r, _ := s.layout.RouteOf(message.Public, "", gone.CacheID)
			last, err := testenv.Do(t, s.c, "XREVRANGE", r.Stream, "+", "-", "COUNT", "1").AsXRange()
			if err != nil || len(last) != 1 || last[0].FieldValues[message.FieldKind] != message.KindDelete ||
				last[0].FieldValues[message.FieldCacheID] != strconv.FormatInt(gone.CacheID, 10) {
				t.Errorf("the stream's last entry: %v (%v), want the deletion of %d", last, err, gone.CacheID)
			}
			p := s.send(t, priv("ann", "bob", "psst"))
			if err := s.Delete(ctx, message.Ref{Kind: message.Private, CacheID: p.CacheID, OwnerID: "ann", RecipientID: "bob"}); err != nil {
				t.Fatal(err)
			}
			s.wantRecent(t, message.PrivateTimeline("ann"), nil)
			s.wantRecent(t, message.PrivateTimeline("bob"), nil)
			for _, id := range []int64{0, -1, keep.CacheID + 64*1_000_000_000} {
				if err := s.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: id}); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("deleting id %d, never issued: %v, want ErrNotFound", id, err)
				}
			}
		}},
	}
	// The partitioned layout runs here on one server (hash tags do nothing there); its
	// cluster-only behaviour is tested in partitioned_test.go.
	for _, layout := range testenv.Layouts(t, "c:") {
		for _, tc := range cases {
			t.Run(layout.Name()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				c := testenv.StartValkey(t).Client(t)
				cfg := tc.cfg
				cfg.Layout = layout
				if cfg.DefaultRate == (store.RateLimit{}) {
					cfg.DefaultRate = unlimited
				}
				st, err := store.Open(c, cfg)
				if err != nil {
					t.Fatal(err)
				}
				tc.run(t, storeCase{Store: st, c: c, layout: layout})
			})
		}
	}
}

// withChannel puts a public message of pub in channel.
func withChannel(m store.Message, channel string) store.Message {
	m.ChannelID = channel
	m.Data = []byte(strings.Replace(string(m.Data), "{", `{"channel_id":"`+channel+`",`, 1))
	return m
}

func (s storeCase) send(t *testing.T, m store.Message) store.Result {
	t.Helper()
	r, err := s.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatalf("enqueue %s: %v", m.Data, err)
	}
	return r
}

func (s storeCase) setRate(t *testing.T, rl store.RateLimit) {
	t.Helper()
	if err := s.SetRateLimit(context.Background(), rl); err != nil {
		t.Fatal(err)
	}
}

// wantRecent checks a timeline's ring: want's ids, oldest first, each entry {cache_id, data}.
func (s storeCase) wantRecent(t *testing.T, tl message.Timeline, want []int64) {
	t.Helper()
	entries, err := s.Recent(context.Background(), tl, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := entryIDs(t, entries); !slices.Equal(got, want) {
		t.Errorf("%+v's ring holds %v, want %v", tl, got, want)
	}
}

// streamLen is the length of the flush stream a message of kind from owner to recipient goes to.
func (s storeCase) streamLen(t *testing.T, kind message.Kind, owner, recipient string) int64 {
	t.Helper()
	n, err := testenv.Do(t, s.c, "XLEN", s.layout.Route(kind, owner, recipient, "").Stream).AsInt64()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
