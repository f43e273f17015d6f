package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

type partBundle struct {
	c    valkey.Client
	keys keyspace.Partitioned
	ops  *store.Store
}

// partitioned returns the partitioned layout's operations on a real 3+3 cluster, through
// valkey-go's cluster client from one seed, or on a standalone server.
func partitioned(t *testing.T, cluster bool, cfg store.Config) *partBundle {
	t.Helper()
	var addr string
	if cluster {
		addr = strings.Split(testenv.StartCluster(t).Addrs, ",")[0]
	} else {
		addr = testenv.StartValkey(t).Addr
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, DisableCache: true, ForceSingleClient: !cluster})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	keys, _ := keyspace.NewPartitioned("t:", keyspace.DefaultPartitions)
	if cfg.DefaultRate == (store.RateLimit{}) {
		cfg.DefaultRate = unlimited
	}
	cfg.Layout = keys
	ops, err := store.Open(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &partBundle{c: c, keys: keys, ops: ops}
}

// TestPartitionedEnqueue, on a real cluster and on one server: 8 goroutines × 150 mixed sends
// (a fifth private, some self-DMs) give no error and no panic; every id is unique, carries its
// partition (id % 64), and rises within each conversation; the public ring, read as a merge of
// its shards, holds exactly the newest public ids in order; each private ring exactly the
// user's newest messages.
func TestPartitionedEnqueue(t *testing.T) {
	t.Parallel()
	for _, cluster := range []bool{true, false} {
		t.Run(map[bool]string{true: "cluster", false: "standalone"}[cluster], func(t *testing.T) {
			t.Parallel()
			b := partitioned(t, cluster, store.Config{RecentSize: 50})
			ctx := context.Background()
			type sent struct {
				id              int64
				kind            message.Kind
				owner, to, conv string
			}
			var mu sync.Mutex
			var all []sent
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 150 {
						owner := fmt.Sprintf("u%d", g)
						m := pub(owner, fmt.Sprintf("%d-%d", g, i))
						s := sent{kind: message.Public, owner: owner, conv: owner}
						if i%5 == 0 {
							to := fmt.Sprintf("u%d", (g+i/5)%8) // sometimes g itself: a self-DM
							m = priv(owner, to, fmt.Sprintf("%d-%d", g, i))
							a, z := min(owner, to), max(owner, to)
							s = sent{kind: message.Private, owner: owner, to: to, conv: a + ">" + z}
						}
						res, err := b.ops.Enqueue(ctx, m)
						if err != nil {
							t.Errorf("enqueue: %v", err)
							return
						}
						s.id = res.CacheID
						mu.Lock()
						all = append(all, s)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			seen := map[int64]bool{}
			var public []int64
			for _, s := range all {
				if seen[s.id] {
					t.Fatalf("id %d given twice", s.id)
				}
				if s.id < keyspace.IDBase || s.id >= 1<<53 {
					t.Fatalf("id %d outside [2^52, 2^53)", s.id)
				}
				seen[s.id] = true
				want := b.keys.PublicPartition(s.owner)
				if s.kind == message.Private {
					want = b.keys.PrivatePartition(s.owner, s.to)
				}
				if got := b.keys.PartitionOf(s.id); got != want {
					t.Fatalf("id %d is in partition %d, want %d", s.id, got, want)
				}
				if s.kind == message.Public {
					public = append(public, s.id)
				}
			}
			// Ids rise within a conversation: one sender's messages of one conversation, in the
			// order that sender sent them (all keeps each goroutine's order).
			perConv := map[string][]int64{}
			for _, s := range all {
				perConv[s.owner+"|"+s.conv] = append(perConv[s.owner+"|"+s.conv], s.id)
			}
			for conv, ids := range perConv {
				for i := 1; i < len(ids); i++ {
					if ids[i] <= ids[i-1] {
						t.Fatalf("conversation %s: id %d after %d", conv, ids[i], ids[i-1])
					}
				}
			}
			got, err := b.ops.Recent(ctx, message.ChannelTimeline(""), 50)
			if err != nil {
				t.Fatal(err)
			}
			wantIDs := newest(public, 50)
			if ids := entryIDs(t, got); fmt.Sprint(ids) != fmt.Sprint(wantIDs) {
				t.Fatalf("public ring %v\nwant the 50 newest %v", ids, wantIDs)
			}
			for u := range 8 {
				user := fmt.Sprintf("u%d", u)
				var mine []int64
				for _, s := range all {
					if s.kind == message.Private && (s.owner == user || s.to == user) {
						mine = append(mine, s.id)
					}
				}
				ring, err := b.ops.Recent(ctx, message.PrivateTimeline(user), 50)
				if err != nil {
					t.Fatal(err)
				}
				if ids := entryIDs(t, ring); fmt.Sprint(ids) != fmt.Sprint(newest(mine, 50)) {
					t.Fatalf("%s's private ring %v, want %v (a self-DM once)", user, ids, newest(mine, 50))
				}
			}
		})
	}
}

func newest(ids []int64, n int) []int64 {
	s := append([]int64(nil), ids...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// TestPartitionedRateLimitAndRetry, on a real cluster: one user's burst gets exactly the limit
// accepted whatever partitions its messages go to; a rejected message takes no id; a retry with
// the same client_msg_id returns the first id even at the limit, and costs no quota.
func TestPartitionedRateLimitAndRetry(t *testing.T) {
	t.Parallel()
	b := partitioned(t, true, store.Config{})
	ctx := context.Background()
	if err := b.ops.SetRateLimit(ctx, store.RateLimit{Limit: 5, WindowSeconds: 60, Algorithm: store.Fixed}); err != nil {
		t.Fatal(err)
	}
	first := pub("alice", "first")
	first.ClientMsgID = "c1"
	res, err := b.ops.Enqueue(ctx, first)
	if err != nil {
		t.Fatal(err)
	}
	accepted, limited := 1, 0
	for i := range 8 {
		// Private messages to many peers: many partitions, one user's quota.
		_, err := b.ops.Enqueue(ctx, priv("alice", fmt.Sprintf("peer%d", i), "x"))
		var rle *store.RateLimitedError
		switch {
		case err == nil:
			accepted++
		case errors.As(err, &rle) && rle.RetryAfter > 0:
			limited++
		default:
			t.Fatal(err)
		}
	}
	if accepted != 5 || limited != 4 {
		t.Fatalf("accepted %d, limited %d; want 5 and 4", accepted, limited)
	}
	again, err := b.ops.Enqueue(ctx, first)
	if err != nil || !again.Duplicate || again.CacheID != res.CacheID {
		t.Fatalf("retry at the limit: %+v, %v; want id %d again", again, err, res.CacheID)
	}
	if err := b.ops.SetRateLimit(ctx, store.RateLimit{Limit: 6, WindowSeconds: 60, Algorithm: store.Fixed}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ops.Enqueue(ctx, pub("alice", "sixth")); err != nil {
		t.Fatalf("the retry cost quota: %v", err)
	}
}

// TestPartitionedBatchAndDelete, on a real cluster: a batch spread over every partition is
// accepted in order with the rate limit per user kept within the batch, a client_msg_id retry
// inside it gets the first id, and a public delete removes the message from its ring shard and
// records the deletion on its partition's stream; an id never issued is not found.
func TestPartitionedBatchAndDelete(t *testing.T) {
	t.Parallel()
	b := partitioned(t, true, store.Config{})
	ctx := context.Background()
	if err := b.ops.SetRateLimit(ctx, store.RateLimit{Limit: 3, WindowSeconds: 60, Algorithm: store.Fixed}); err != nil {
		t.Fatal(err)
	}
	var msgs []store.Message
	for i := range 200 {
		msgs = append(msgs, pub(fmt.Sprintf("u%d", i), "x"))
	}
	for range 5 {
		msgs = append(msgs, pub("busy", "y")) // 3 accepted, 2 limited
	}
	retry := pub("u1", "retried")
	retry.ClientMsgID = "r1"
	msgs = append(msgs, retry)
	outs := b.ops.EnqueueMany(ctx, message.Public, msgs)
	accepted, limited := 0, 0
	parts := map[int]bool{}
	for i, o := range outs {
		var rle *store.RateLimitedError
		switch {
		case o.Err == nil:
			accepted++
			parts[b.keys.PartitionOf(o.CacheID)] = true
		case errors.As(o.Err, &rle):
			limited++
			if msgs[i].OwnerID != "busy" {
				t.Fatalf("message %d of %s limited", i, msgs[i].OwnerID)
			}
		default:
			t.Fatalf("message %d: %v", i, o.Err)
		}
	}
	if accepted != 204 || limited != 2 || len(parts) != keyspace.DefaultPartitions {
		t.Fatalf("accepted %d, limited %d, partitions %d; want 204, 2, %d", accepted, limited, len(parts), keyspace.DefaultPartitions)
	}
	first := outs[len(outs)-1].CacheID
	again := b.ops.EnqueueMany(ctx, message.Public, []store.Message{retry})
	if again[0].Err != nil || !again[0].Duplicate || again[0].CacheID != first {
		t.Fatalf("retry in a batch: %+v, want id %d again", again[0], first)
	}

	victim := outs[0].CacheID
	if err := b.ops.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: victim}); err != nil {
		t.Fatal(err)
	}
	ring, _ := b.ops.Recent(ctx, message.ChannelTimeline(""), 0)
	for _, id := range entryIDs(t, ring) {
		if id == victim {
			t.Fatalf("deleted %d is still in the ring", victim)
		}
	}
	part := b.keys.PartitionOf(victim)
	xs, err := b.c.Do(ctx, b.c.B().Xrevrange().Key(b.keys.Stream(part, message.Public)).End("+").Start("-").Count(1).Build()).AsXRange()
	if err != nil || len(xs) != 1 || xs[0].FieldValues["kind"] != "delete" || xs[0].FieldValues["cache_id"] != fmt.Sprint(victim) {
		t.Fatalf("partition %d's stream ends with %v, %v; want the deletion of %d", part, xs, err, victim)
	}
	for _, id := range []int64{victim + 64*1_000_000, 5, 63, keyspace.IDBase + 63} { // never issued; below the base; partition 63 unused
		if err := b.ops.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: id}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delete %d: %v, want ErrNotFound", id, err)
		}
	}
}

// TestPartitionedDurable, on a real cluster: with durability replica a message is accepted once
// its partition's replica holds it; with every replica stopped a message and a batch spread over
// the partitions are enqueued but answered NotDurableError with their ids, and a retry with the
// same client_msg_id after the replicas are back returns the same id, durable.
func TestPartitionedDurable(t *testing.T) {
	t.Parallel()
	cl := testenv.StartCluster(t)
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: strings.Split(cl.Addrs, ",")[:1], DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, _ := keyspace.NewPartitioned("", keyspace.DefaultPartitions)
	ops, err := store.Open(c, store.Config{Layout: keys, DefaultRate: unlimited, Durability: store.DurableReplica, DurableTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	testenv.WaitFor(t, "a durable enqueue", 10*time.Second, func() bool { _, err := ops.Enqueue(ctx, pub("warm", "up")); return err == nil })
	var replicas []*testenv.Valkey
	for _, n := range cl.Nodes {
		if s, _ := testenv.Do(t, n.Client(t), "INFO", "replication").ToString(); strings.Contains(s, "role:slave") {
			replicas = append(replicas, n)
		}
	}
	if len(replicas) != 3 {
		t.Fatalf("%d replicas, want 3", len(replicas))
	}
	for _, r := range replicas {
		r.Pause()
	}
	resumed := false
	defer func() {
		if !resumed {
			for _, r := range replicas {
				r.Resume()
			}
		}
	}()
	m := pub("alice", "while the replicas are stopped")
	m.ClientMsgID = "d1"
	_, err = ops.Enqueue(ctx, m)
	var nde *store.NotDurableError
	if !errors.As(err, &nde) || nde.CacheID == 0 {
		t.Fatalf("replicas stopped: %v, want NotDurableError with an id", err)
	}
	first := nde.CacheID
	var batch []store.Message
	for i := range 40 {
		batch = append(batch, pub(fmt.Sprintf("b%d", i), "x"))
	}
	for i, o := range ops.EnqueueMany(ctx, message.Public, batch) {
		if !errors.As(o.Err, &nde) || nde.CacheID == 0 {
			t.Fatalf("batch message %d: %v, want NotDurableError with an id", i, o.Err)
		}
	}
	for _, r := range replicas {
		r.Resume()
	}
	resumed = true
	var res store.Result
	testenv.WaitFor(t, "the retry to be durable", 10*time.Second, func() bool {
		res, err = ops.Enqueue(ctx, m)
		return err == nil
	})
	if !res.Duplicate || res.CacheID != first {
		t.Fatalf("retry: %+v, want id %d again", res, first)
	}
}

// TestPartitionedEdits, on a real 3+3 cluster (every script on one slot, no CROSSSLOT): an edit
// of a named channel's, the default channel's and a private message replaces its ring entries;
// the private rings keep the edit's entry when the workers' repair writes the create's again;
// a stale If-Match is a VersionMismatchError naming the current version; an edit of a deleted
// message is ErrNotFound.
func TestPartitionedEdits(t *testing.T) {
	t.Parallel()
	b := partitioned(t, true, store.Config{})
	ctx := context.Background()
	type sent struct {
		m  store.Message
		id int64
	}
	var msgs []sent
	for _, m := range []store.Message{
		{OwnerID: "ann", ChannelID: "team-42.general"},
		{OwnerID: "ann", ChannelID: message.DefaultChannel},
		{OwnerID: "ann", RecipientID: "bob"},
	} {
		mm := message.Message{OwnerID: m.OwnerID, RecipientID: m.RecipientID, ChannelID: m.ChannelID, Content: "v1", CreatedAt: "2026-12-03T10:00:00Z"}
		if m.RecipientID != "" {
			mm.ChannelID = ""
		}
		m.Data = mm.JSON()
		res, err := b.ops.Enqueue(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, sent{m, res.CacheID})
	}
	for _, s := range msgs {
		var mm message.Message
		if err := json.Unmarshal(s.m.Data, &mm); err != nil {
			t.Fatal(err)
		}
		kind := s.m.Kind()
		mm.Content, mm.EditedAt = "v2", "2026-12-03T10:00:01Z"
		v, err := b.ops.Edit(ctx, store.Edit{Kind: kind, CacheID: s.id, Message: mm, Found: s.id})
		if err != nil || v <= s.id {
			t.Fatalf("editing %d: version %d, %v", s.id, v, err)
		}
		var vme *store.VersionMismatchError
		if _, err := b.ops.Edit(ctx, store.Edit{Kind: kind, CacheID: s.id, Message: mm, Found: s.id, IfMatch: s.id}); !errors.As(err, &vme) || vme.Current != v {
			t.Errorf("a stale If-Match on %d: %v, want a mismatch naming %d", s.id, err, v)
		}
		tl := message.ChannelTimeline(mm.ChannelID)
		if kind == message.Private {
			// The repair of the create's entry, late: the rings keep the edit's.
			create := message.Record{CacheID: s.id, Message: mm}
			if err := b.ops.RepairRings(ctx, []message.Record{create}, []string{string(message.AppendEnvelope(nil, s.id, s.id, s.m.Data))}); err != nil {
				t.Fatal(err)
			}
			tl = message.PrivateTimeline("bob")
		}
		ring, err := b.ops.Recent(ctx, tl, 50)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`{"cache_id":%d,"version":%d,"data":%s}`, s.id, v, mm.JSON())
		if !slices.Contains(ring, want) || len(ring) != 1 {
			t.Errorf("%v's ring after the edit: %q, want only %s", tl, ring, want)
		}
	}
	// Found 0: the script finds the message in its channel's backlog index and puts the new
	// content in its data, byte for byte as ingest writes it, whatever the content holds.
	s := msgs[0]
	var mm0 message.Message
	_ = json.Unmarshal(s.m.Data, &mm0)
	mm0.Content, mm0.EditedAt = `tricky "\ ","created_at":"x"} <b>&`+"  é", "2026-12-03T10:00:02.5Z"
	v, err := b.ops.Edit(ctx, store.Edit{Kind: message.Public, CacheID: s.id,
		Message: message.Message{OwnerID: "ann", ChannelID: s.m.ChannelID, Content: mm0.Content, EditedAt: mm0.EditedAt}})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := b.ops.Recent(ctx, message.ChannelTimeline(s.m.ChannelID), 50)
	if want := fmt.Sprintf(`{"cache_id":%d,"version":%d,"data":%s}`, s.id, v, mm0.JSON()); err != nil || len(ring) != 1 || ring[0] != want {
		t.Errorf("the ring after an edit the script found: %q, %v; want %s", ring, err, want)
	}
	if _, err := b.ops.Edit(ctx, store.Edit{Kind: message.Public, CacheID: s.id,
		Message: message.Message{OwnerID: "bob", ChannelID: s.m.ChannelID, Content: "x", EditedAt: mm0.EditedAt}}); !errors.Is(err, store.ErrNotAuthor) {
		t.Errorf("another author's edit the script found: %v, want ErrNotAuthor", err)
	}
	if _, err := b.ops.Edit(ctx, store.Edit{Kind: message.Public, CacheID: s.id,
		Message: message.Message{OwnerID: "ann", ChannelID: "elsewhere", Content: "x", EditedAt: mm0.EditedAt}}); !errors.Is(err, store.ErrLookup) && !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an edit through another channel: %v, want ErrLookup (not in that channel's index) or ErrNotFound (not in its partition)", err)
	}
	if err := b.ops.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: s.m.ChannelID, CacheID: s.id}); err != nil {
		t.Fatal(err)
	}
	var mm message.Message
	_ = json.Unmarshal(s.m.Data, &mm)
	if _, err := b.ops.Edit(ctx, store.Edit{Kind: message.Public, CacheID: s.id, Message: mm, Found: s.id}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("editing a deleted message: %v, want ErrNotFound", err)
	}
}

// TestPartitionedPrivateRingFailover, on a real 3+3 cluster with durability replica: a private
// message's rings live on its users' slots, away from its flush stream. The replica of the
// primary that holds alice's ring is stopped (and its replication link dropped), so that the
// ring write cannot reach it; a client sends alice→bob with a client_msg_id and retries, as the Go client does, until a definite
// answer; that primary is SIGKILLed and its replica, resumed, promoted. The 202 the client
// finally gets must mean what it says: the message is in both users' rings afterwards, with
// the primary that had the first write gone. (The ring write once ran after the enqueue's
// WAIT, outside it, and a 202 could name a message the promoted replica's ring never had.)
func TestPartitionedPrivateRingFailover(t *testing.T) {
	t.Parallel()
	cl := testenv.StartCluster(t)
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: strings.Split(cl.Addrs, ","), DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, _ := keyspace.NewPartitioned("", keyspace.DefaultPartitions)
	ops, err := store.Open(c, store.Config{Layout: keys, DefaultRate: unlimited, Durability: store.DurableReplica,
		DurableTimeout: 100 * time.Millisecond, Timeout: time.Second, RecentSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Who serves which slot: alice's ring on one primary, the conversation's stream and bob's
	// ring on the others, so that only the ring write is held back.
	owners := slotOwners(t, cl)
	slot := func(key string) uint16 { cmd := c.B().Get().Key(key).Build(); return cmd.Slot() }
	var m store.Message
	var ring *shard
	for i := 0; ring == nil && i < 1000; i++ {
		alice, bob := fmt.Sprintf("alice%d", i), fmt.Sprintf("bob%d", i)
		route := keys.Route(message.Private, alice, bob, "")
		s := owners[slot(keys.PrivateRing(alice))]
		if s != owners[slot(route.Stream)] && s != owners[slot(keys.PrivateRing(bob))] {
			ring, m = s, priv(alice, bob, "over the failover")
		}
	}
	if ring == nil {
		t.Fatal("no pair of users among 1000 whose ring, stream and other ring are on different primaries")
	}
	m.ClientMsgID = "ring-1"
	testenv.WaitFor(t, "a durable enqueue", 10*time.Second, func() bool { _, err := ops.Enqueue(ctx, pub("warm", "up")); return err == nil })
	// Stopped, the replica would still find in its socket what the primary sent before the
	// kill: the primary also drops the link, so that nothing written from now on reaches it.
	ring.replica.Pause()
	testenv.Do(t, ring.primary.Client(t), "CLIENT", "KILL", "TYPE", "replica")
	resumed := false
	defer func() {
		if !resumed {
			ring.replica.Resume()
		}
	}()

	type answer struct {
		res store.Result
		err error
	}
	done := make(chan answer, 1)
	go func() { // the client: retries while the answer is not definite, for up to 30 s
		deadline := time.Now().Add(30 * time.Second)
		for {
			res, err := ops.Enqueue(ctx, m)
			var nde *store.NotDurableError
			if err == nil || time.Now().After(deadline) || !(errors.As(err, &nde) || errors.Is(err, store.ErrUnavailable)) {
				done <- answer{res, err}
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond) // the first attempt's ring write sits on the primary alone
	ring.primary.Stop()
	ring.replica.Resume()
	resumed = true
	testenv.WaitFor(t, "the ring's replica promoted", 20*time.Second, func() bool {
		s, _ := testenv.Do(t, ring.replica.Client(t), "INFO", "replication").ToString()
		return strings.Contains(s, "role:master")
	})
	ring.primary.Restart() // it rejoins as the new primary's replica, so that WAIT can pass again
	a := <-done
	if a.err != nil {
		t.Fatalf("the send was never answered 202: %v", a.err)
	}
	for _, user := range []string{m.OwnerID, m.RecipientID} {
		var found bool
		testenv.WaitFor(t, user+"'s ring readable", 10*time.Second, func() bool {
			entries, err := ops.Recent(ctx, message.PrivateTimeline(user), 50)
			if err != nil {
				return false
			}
			found = slices.ContainsFunc(entries, func(e string) bool { return strings.Contains(e, fmt.Sprintf(`"cache_id":%d,`, a.res.CacheID)) })
			return true
		})
		if !found {
			t.Errorf("%s's ring lacks message %d, answered 202, after the failover of the primary that held it", user, a.res.CacheID)
		}
	}
}

// shard is a primary and its replica.
type shard struct{ primary, replica *testenv.Valkey }

// slotOwners maps each slot to its shard (CLUSTER SLOTS), once every shard has its replica.
func slotOwners(t *testing.T, cl *testenv.Cluster) map[uint16]*shard {
	t.Helper()
	byAddr := map[string]*testenv.Valkey{}
	for _, n := range cl.Nodes {
		byAddr[n.Addr] = n
	}
	var rows []valkey.ValkeyMessage
	testenv.WaitFor(t, "a replica for every shard in CLUSTER SLOTS", 20*time.Second, func() bool {
		rows, _ = testenv.Do(t, cl.Nodes[0].Client(t), "CLUSTER", "SLOTS").ToArray()
		for _, row := range rows {
			if f, _ := row.ToArray(); len(f) < 4 {
				return false
			}
		}
		return len(rows) > 0
	})
	out := map[uint16]*shard{}
	for _, row := range rows {
		f, _ := row.ToArray()
		lo, _ := f[0].AsInt64()
		hi, _ := f[1].AsInt64()
		addr := func(v valkey.ValkeyMessage) *testenv.Valkey {
			x, _ := v.ToArray()
			host, _ := x[0].ToString()
			port, _ := x[1].AsInt64()
			return byAddr[fmt.Sprintf("%s:%d", host, port)]
		}
		s := &shard{primary: addr(f[2]), replica: addr(f[3])}
		for sl := lo; sl <= hi; sl++ {
			out[uint16(sl)] = s
		}
	}
	return out
}
