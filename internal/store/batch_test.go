package store_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// outcomeClass is what a caller sees of one outcome, without the times that differ between runs.
type outcomeClass struct {
	CacheID   int64
	Duplicate bool
	Class     string
}

func classOf(t *testing.T, o store.Outcome, window time.Duration) outcomeClass {
	t.Helper()
	c := outcomeClass{CacheID: o.CacheID, Duplicate: o.Duplicate, Class: "accepted"}
	var rle *store.RateLimitedError
	switch {
	case o.Err == nil:
	case errors.As(o.Err, &rle):
		if rle.RetryAfter <= 0 || rle.RetryAfter > window {
			t.Errorf("retry after %s, want within (0, %s]", rle.RetryAfter, window)
		}
		c.Class = "rate limited"
	case errors.Is(o.Err, store.ErrBacklogFull):
		c.Class = "backlog full"
	default:
		t.Fatalf("unexpected error: %v", o.Err)
	}
	return c
}

// model is what enqueueing means, message by message, written plainly in Go: the oracle of
// TestBatchMatchesModel. No time passes in it (the tests' windows are a minute long), so a
// GCRA limit of L per window allows L messages as a fixed window does.
type model struct {
	cfg     store.Config
	limit   int
	taken   map[string]int
	clients map[string]int64
	last    int64
	stream  []streamEntry
	rings   map[string][]string
}

func (m *model) enqueue(b *testBundle, kind message.Kind, msg store.Message) outcomeClass {
	ck := msg.OwnerID + "/" + msg.ClientMsgID
	if id, ok := m.clients[ck]; ok && msg.ClientMsgID != "" {
		return outcomeClass{CacheID: id, Duplicate: true, Class: "accepted"}
	}
	if m.taken[msg.OwnerID] >= m.limit {
		return outcomeClass{Class: "rate limited"}
	}
	if len(m.stream) >= int(m.cfg.BacklogCap) && m.cfg.BacklogCap > 0 {
		return outcomeClass{Class: "backlog full"}
	}
	m.taken[msg.OwnerID]++
	m.last++
	if msg.ClientMsgID != "" {
		m.clients[ck] = m.last
	}
	id := strconv.FormatInt(m.last, 10)
	entry := `{"cache_id":` + id + `,"version":` + id + `,"data":` + string(msg.Data) + `}`
	m.stream = append(m.stream, streamEntry{id, kind.String(), entry})
	rings := []string{b.keys.PublicRing()}
	if kind == message.Private {
		rings = []string{b.keys.PrivateRing(msg.OwnerID)}
		if msg.RecipientID != msg.OwnerID {
			rings = append(rings, b.keys.PrivateRing(msg.RecipientID))
		}
	}
	for _, r := range rings {
		m.rings[r] = append(m.rings[r], entry)
		if n := len(m.rings[r]); n > m.cfg.RecentSize {
			m.rings[r] = m.rings[r][n-m.cfg.RecentSize:]
		}
	}
	return outcomeClass{CacheID: m.last, Class: "accepted"}
}

// ordinals replaces ids by the order of their first appearance, counting on from seen (which it
// keeps across calls): the partitioned layout's ids are its partitions' own, but which message
// was accepted, and which retry got which one's id, must be the model's.
func ordinals(seen map[int64]int64, in []outcomeClass) []outcomeClass {
	out := make([]outcomeClass, len(in))
	for i, o := range in {
		if o.CacheID != 0 {
			n, ok := seen[o.CacheID]
			if !ok {
				n = int64(len(seen) + 1)
				seen[o.CacheID] = n
			}
			o.CacheID = n
		}
		out[i] = o
	}
	return out
}

// TestBatchMatchesModel: one enqueue.lua call for a whole batch judges every message as the
// model does one at a time — ids, client_msg_id retries (also within the batch), rate limits
// reached within the batch (fixed window and GCRA), the backlog cap reached halfway, rings
// trimmed, self-DMs stored once — and leaves what the model holds, across two batches in a row;
// the same messages sent one by one (Enqueue) give the same outcomes, in the single layout and
// in the partitioned one (its ids taken by their order; the backlog cap, per partition there,
// left out).
func TestBatchMatchesModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind message.Kind
		cfg  store.Config
		rate store.RateLimit
		n    int
	}{
		{"public, fixed window", message.Public, store.Config{RecentSize: 7}, store.RateLimit{Limit: 4, WindowSeconds: 60, Algorithm: store.Fixed}, 60},
		{"public, gcra", message.Public, store.Config{RecentSize: 7}, store.RateLimit{Limit: 3, WindowSeconds: 60, Algorithm: store.GCRA}, 60},
		{"public, backlog cap", message.Public, store.Config{RecentSize: 100, BacklogCap: 25}, store.RateLimit{Limit: 10, WindowSeconds: 60, Algorithm: store.Fixed}, 60},
		{"private, fixed window", message.Private, store.Config{RecentSize: 3}, store.RateLimit{Limit: 5, WindowSeconds: 60, Algorithm: store.Fixed}, 60},
		{"private, gcra", message.Private, store.Config{RecentSize: 3}, store.RateLimit{Limit: 6, WindowSeconds: 60, Algorithm: store.GCRA}, 60},
		{"larger than one script", message.Public, store.Config{RecentSize: 50}, store.RateLimit{Limit: 1000, WindowSeconds: 60, Algorithm: store.Fixed}, 2500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(1, uint64(len(tt.name))))
			users := []string{"ann", "bob", "cy", "dee", "eve"}
			clients := []string{"c1", "c2", "c3"}
			msgs := make([]store.Message, tt.n)
			for i := range msgs {
				owner := users[rng.IntN(len(users))]
				if tt.kind == message.Private {
					msgs[i] = priv(owner, users[rng.IntN(len(users))], strconv.Itoa(i)) // some to themselves
				} else {
					msgs[i] = pub(owner, strconv.Itoa(i))
				}
				if rng.IntN(4) == 0 {
					// A retry is of the same message: to the same recipient. (The partitioned
					// layout keeps a private message's record in its conversation's partition,
					// so an id reused for another conversation is a new message there.)
					msgs[i].ClientMsgID = clients[rng.IntN(len(clients))] + ">" + msgs[i].RecipientID
				}
			}
			batch, single := setup(t, tt.cfg), setup(t, tt.cfg)
			setRate(t, batch, tt.rate)
			setRate(t, single, tt.rate)
			var parted, partedBatch *store.Store
			if tt.cfg.BacklogCap == 0 {
				parted, partedBatch = partitioned(t, false, tt.cfg).ops, partitioned(t, false, tt.cfg).ops
				for _, s := range []*store.Store{parted, partedBatch} {
					if err := s.SetRateLimit(ctx, tt.rate); err != nil {
						t.Fatal(err)
					}
				}
			}
			wantSeen, partSeen, partBatchSeen := map[int64]int64{}, map[int64]int64{}, map[int64]int64{}
			if tt.cfg.RecentSize == 0 {
				tt.cfg.RecentSize = 500
			}
			m := &model{cfg: tt.cfg, limit: tt.rate.Limit, taken: map[string]int{}, clients: map[string]int64{}, rings: map[string][]string{}}
			window := time.Duration(tt.rate.WindowSeconds) * time.Second
			classes := map[string]int{}
			for round, part := range [][]store.Message{msgs[:tt.n/2], msgs[tt.n/2:]} {
				got := batch.scripts.EnqueueMany(ctx, tt.kind, part)
				if len(got) != len(part) {
					t.Fatalf("%d outcomes for %d messages", len(got), len(part))
				}
				var want, gotC, oneByOne, partOne []outcomeClass
				for i, msg := range part {
					want = append(want, m.enqueue(batch, tt.kind, msg))
					gotC = append(gotC, classOf(t, got[i], window))
					r, err := single.scripts.Enqueue(ctx, msg)
					oneByOne = append(oneByOne, classOf(t, store.Outcome{Result: r, Err: err}, window))
					if parted != nil {
						r, err := parted.Enqueue(ctx, msg)
						partOne = append(partOne, classOf(t, store.Outcome{Result: r, Err: err}, window))
					}
					classes[gotC[i].Class]++
					if gotC[i].Duplicate {
						classes["duplicate"]++
					}
				}
				if diff := cmp.Diff(want, gotC); diff != "" {
					t.Fatalf("round %d: batch outcomes (-model +batch):\n%s", round, diff)
				}
				if diff := cmp.Diff(want, oneByOne); diff != "" {
					t.Fatalf("round %d: one-by-one outcomes (-model +Enqueue):\n%s", round, diff)
				}
				if parted != nil {
					var partBatch []outcomeClass
					for _, o := range partedBatch.EnqueueMany(ctx, tt.kind, part) {
						partBatch = append(partBatch, classOf(t, o, window))
					}
					w := ordinals(wantSeen, want)
					if diff := cmp.Diff(w, ordinals(partSeen, partOne)); diff != "" {
						t.Fatalf("round %d: partitioned one-by-one outcomes (-model +Enqueue), ids by order:\n%s", round, diff)
					}
					if diff := cmp.Diff(w, ordinals(partBatchSeen, partBatch)); diff != "" {
						t.Fatalf("round %d: partitioned batch outcomes (-model +EnqueueMany), ids by order:\n%s", round, diff)
					}
				}
			}
			t.Logf("%v", classes)
			if classes["duplicate"] == 0 || (tt.n < 1000 && classes["accepted"] == tt.n) {
				t.Fatalf("outcomes %v: the batch does not exercise retries and rejections", classes)
			}
			// What the batch and the batch-of-one path leave is the model's.
			for _, b := range []struct {
				name string
				*testBundle
			}{{"batch", batch}, {"one by one", single}} {
				if diff := cmp.Diff(m.stream, streamEntries(t, b.testBundle, tt.kind)); diff != "" {
					t.Errorf("%s: stream (-model +%s):\n%s", b.name, b.name, diff)
				}
				for _, u := range append(users, "") {
					ring := b.keys.PublicRing()
					if u != "" {
						ring = b.keys.PrivateRing(u)
					}
					got, err := testenv.Do(t, b.client, "LRANGE", ring, "0", "-1").AsStrSlice()
					if err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(m.rings[ring], got, cmpEmpty); diff != "" {
						t.Errorf("%s: ring %s (-model +%s):\n%s", b.name, ring, b.name, diff)
					}
				}
				if n, _ := testenv.Do(t, b.client, "GET", b.keys.Counter(tt.kind)).AsInt64(); n != m.last {
					t.Errorf("%s: id counter = %d, want %d", b.name, n, m.last)
				}
				for _, u := range users {
					key := b.keys.RateLimit(u)
					if tt.rate.Algorithm == store.GCRA {
						key = b.keys.RateLimitGCRA(u)
					}
					ttl, _ := testenv.Do(t, b.client, "PTTL", key).AsInt64()
					if m.taken[u] > 0 && (ttl < 1 || ttl > window.Milliseconds()) {
						t.Errorf("%s: %s's rate-limit state %s expires in %d ms, want within the window", b.name, u, key, ttl)
					}
					if n, _ := testenv.Do(t, b.client, "GET", key).AsInt64(); tt.rate.Algorithm == store.Fixed && n != int64(m.taken[u]) {
						t.Errorf("%s: %s's window counter = %d, want %d", b.name, u, n, m.taken[u])
					}
				}
			}
		})
	}
}

var cmpEmpty = cmp.Comparer(func(a, b []string) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })
