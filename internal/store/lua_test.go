package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type testBundle struct {
	server  *testenv.Valkey
	client  valkey.Client
	scripts *store.Store
	keys    keyspace.Keys
}

// unlimited is a rate limit no test of other things runs into.
var unlimited = store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}

func setup(t testing.TB, cfg store.Config) *testBundle {
	t.Helper()
	srv := testenv.StartValkey(t)
	c := srv.Client(t)
	if cfg.DefaultRate == (store.RateLimit{}) {
		cfg.DefaultRate = unlimited
	}
	keys, err := keyspace.New("t:")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Layout = keys
	s, err := store.Open(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{server: srv, client: c, scripts: s, keys: keys}
}

func pub(owner, content string) store.Message {
	data, _ := json.Marshal(map[string]string{"owner_id": owner, "username": owner, "content": content})
	return store.Message{OwnerID: owner, Data: data}
}

func priv(owner, recipient, content string) store.Message {
	data, _ := json.Marshal(map[string]string{"owner_id": owner, "recipient_id": recipient, "content": content})
	return store.Message{OwnerID: owner, RecipientID: recipient, Data: data}
}

func mustEnqueue(t *testing.T, b *testBundle, m store.Message) store.Result {
	t.Helper()
	r, err := b.scripts.Enqueue(context.Background(), m)
	if err != nil {
		t.Fatalf("enqueue %s: %v", m.Data, err)
	}
	return r
}

// ringIDs returns the cache ids in a ring, oldest first, checking each entry's shape.
func ringIDs(t *testing.T, b *testBundle, ring string) []int64 {
	t.Helper()
	entries, err := b.client.Do(context.Background(), b.client.B().Lrange().Key(ring).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return entryIDs(t, entries)
}

// entryIDs returns the cache ids of ring entries, checking each entry's shape.
func entryIDs(t *testing.T, entries []string) []int64 {
	t.Helper()
	ids := []int64{}
	for _, e := range entries {
		var v struct {
			CacheID int64           `json:"cache_id"`
			Data    json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal([]byte(e), &v); err != nil || len(v.Data) == 0 {
			t.Fatalf("ring entry %q is not {cache_id, data}: %v", e, err)
		}
		ids = append(ids, v.CacheID)
	}
	return ids
}

type streamEntry struct {
	CacheID, Kind, Payload string
}

func streamEntries(t *testing.T, b *testBundle, kind message.Kind) []streamEntry {
	t.Helper()
	xs, err := testenv.Do(t, b.client, "XRANGE", b.keys.Stream(kind), "-", "+").AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	out := []streamEntry{}
	for _, x := range xs {
		out = append(out, streamEntry{x.FieldValues["cache_id"], x.FieldValues["kind"], x.FieldValues["payload"]})
	}
	return out
}

func TestEnqueuePublic(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	r1 := mustEnqueue(t, b, pub("alice", "hello"))
	r2 := mustEnqueue(t, b, pub("bob", "hi"))
	if r1.CacheID != 1 || r2.CacheID != 2 || r1.Duplicate {
		t.Fatalf("results = %+v, %+v; want cache ids 1 and 2", r1, r2)
	}
	if diff := cmp.Diff([]int64{1, 2}, ringIDs(t, b, b.keys.PublicRing())); diff != "" {
		t.Errorf("ring (-want +got):\n%s", diff)
	}
	want := []streamEntry{
		{"1", "message", `{"cache_id":1,"version":1,"data":{"content":"hello","owner_id":"alice","username":"alice"}}`},
		{"2", "message", `{"cache_id":2,"version":2,"data":{"content":"hi","owner_id":"bob","username":"bob"}}`},
	}
	if diff := cmp.Diff(want, streamEntries(t, b, message.Public)); diff != "" {
		t.Errorf("stream (-want +got):\n%s", diff)
	}
}

func TestRingsCapped(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{RecentSize: 3})
	for i := range 5 {
		mustEnqueue(t, b, pub("alice", strconv.Itoa(i)))
		mustEnqueue(t, b, priv("alice", "bob", strconv.Itoa(i)))
	}
	if diff := cmp.Diff([]int64{3, 4, 5}, ringIDs(t, b, b.keys.PublicRing())); diff != "" {
		t.Errorf("public ring (-want +got):\n%s", diff)
	}
	for _, u := range []string{"alice", "bob"} {
		if diff := cmp.Diff([]int64{3, 4, 5}, ringIDs(t, b, b.keys.PrivateRing(u))); diff != "" {
			t.Errorf("%s's ring (-want +got):\n%s", u, diff)
		}
	}
	if n := len(streamEntries(t, b, message.Public)); n != 5 {
		t.Errorf("public stream holds %d entries, want 5: the stream is never trimmed by enqueue", n)
	}
}

func TestEnqueuePrivate(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	mustEnqueue(t, b, priv("alice", "bob", "a to b"))
	mustEnqueue(t, b, priv("carol", "carol", "note to self"))
	tests := []struct {
		user string
		want []int64
	}{
		{"alice", []int64{1}},
		{"bob", []int64{1}},
		{"carol", []int64{2}}, // a self-DM is stored once
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ringIDs(t, b, b.keys.PrivateRing(tt.user))); diff != "" {
			t.Errorf("%s's ring (-want +got):\n%s", tt.user, diff)
		}
	}
	if n := len(streamEntries(t, b, message.Private)); n != 2 {
		t.Errorf("private stream holds %d entries, want 2", n)
	}
	if n := len(streamEntries(t, b, message.Public)); n != 0 {
		t.Errorf("public stream holds %d entries, want 0", n)
	}
}

func setRate(t *testing.T, b *testBundle, rl store.RateLimit) {
	t.Helper()
	if err := b.scripts.SetRateLimit(context.Background(), rl); err != nil {
		t.Fatal(err)
	}
}

func rateLimited(t *testing.T, err error) time.Duration {
	t.Helper()
	var rle *store.RateLimitedError
	if !errors.As(err, &rle) || !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("err = %v, want a RateLimitedError", err)
	}
	return rle.RetryAfter
}

func TestFixedWindow(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	setRate(t, b, store.RateLimit{Limit: 3, WindowSeconds: 1, Algorithm: store.Fixed})
	ctx := context.Background()
	for i := range 3 {
		mustEnqueue(t, b, pub("alice", strconv.Itoa(i)))
	}
	_, err := b.scripts.Enqueue(ctx, pub("alice", "4th"))
	retry := rateLimited(t, err)
	if retry <= 0 || retry > time.Second {
		t.Fatalf("retry after %s, want within the 1s window", retry)
	}
	// Another user has a window of their own; the rejection consumed no id.
	if r := mustEnqueue(t, b, pub("bob", "b")); r.CacheID != 4 {
		t.Fatalf("bob's cache id = %d, want 4 (a rejected message consumes no id)", r.CacheID)
	}
	// Just before the window's end alice is still limited; just after it she is not.
	time.Sleep(retry - 50*time.Millisecond)
	if _, err := b.scripts.Enqueue(ctx, pub("alice", "early")); !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("50ms before the window ends: err = %v, want rate limited", err)
	}
	time.Sleep(100 * time.Millisecond)
	if r := mustEnqueue(t, b, pub("alice", "next window")); r.CacheID != 5 {
		t.Fatalf("cache id = %d, want 5", r.CacheID)
	}
}

func TestGCRA(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	setRate(t, b, store.RateLimit{Limit: 4, WindowSeconds: 1, Algorithm: store.GCRA})
	ctx := context.Background()
	// A burst of the limit is allowed, then one message per window/limit (250ms).
	for i := range 4 {
		mustEnqueue(t, b, pub("alice", strconv.Itoa(i)))
	}
	_, err := b.scripts.Enqueue(ctx, pub("alice", "5th"))
	retry := rateLimited(t, err)
	if retry <= 150*time.Millisecond || retry > 250*time.Millisecond {
		t.Fatalf("retry after %s, want about 250ms (one emission interval)", retry)
	}
	time.Sleep(retry - 40*time.Millisecond)
	if _, err := b.scripts.Enqueue(ctx, pub("alice", "early")); !errors.Is(err, store.ErrRateLimited) {
		t.Fatalf("40ms before the exact retry time: err = %v, want rate limited", err)
	}
	time.Sleep(60 * time.Millisecond)
	mustEnqueue(t, b, pub("alice", "on time"))
	// Smooth: the next one has to wait a whole interval again, not a window.
	_, err = b.scripts.Enqueue(ctx, pub("alice", "again"))
	if retry := rateLimited(t, err); retry > 260*time.Millisecond {
		t.Fatalf("retry after %s, want at most one interval", retry)
	}
	if r := mustEnqueue(t, b, pub("bob", "b")); r.CacheID != 6 {
		t.Fatalf("bob's cache id = %d, want 6", r.CacheID)
	}
}

func TestRateLimitSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{DefaultRate: store.RateLimit{Limit: 30, WindowSeconds: 10, Algorithm: store.Fixed}})
	ctx := context.Background()
	got, err := b.scripts.RateLimit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.RateLimit{Limit: 30, WindowSeconds: 10, Algorithm: store.Fixed}); got != want {
		t.Fatalf("default = %+v, want %+v", got, want)
	}
	bad := []store.RateLimit{
		{Limit: 0, WindowSeconds: 10, Algorithm: store.Fixed},
		{Limit: 3, WindowSeconds: 0, Algorithm: store.Fixed},
		{Limit: 3, WindowSeconds: 10, Algorithm: "leaky"},
		{Limit: store.MaxLimit + 1, WindowSeconds: 10, Algorithm: store.GCRA},
	}
	for _, rl := range bad {
		if err := b.scripts.SetRateLimit(ctx, rl); err == nil {
			t.Errorf("SetRateLimit(%+v) = nil, want an error", rl)
		}
	}
	want := store.RateLimit{Limit: 3, WindowSeconds: 7, Algorithm: store.GCRA}
	setRate(t, b, want)
	if got, _ := b.scripts.RateLimit(ctx); got != want {
		t.Fatalf("after set = %+v, want %+v", got, want)
	}
}

func TestClientMsgID(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	ctx := context.Background()
	m := pub("alice", "once")
	m.ClientMsgID = "c-1"
	first := mustEnqueue(t, b, m)
	again := mustEnqueue(t, b, m)
	if !again.Duplicate || again.CacheID != first.CacheID {
		t.Fatalf("retry = %+v, want a duplicate of %d", again, first.CacheID)
	}
	// Concurrent requests with one client id get one cache id between them.
	m.ClientMsgID = "c-2"
	var wg sync.WaitGroup
	ids := make([]int64, 16)
	for i := range ids {
		wg.Go(func() {
			r, err := b.scripts.Enqueue(ctx, m)
			if err != nil {
				t.Error(err)
			}
			ids[i] = r.CacheID
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != 2 {
			t.Fatalf("concurrent ids = %v, want all 2", ids)
		}
	}
	// The same client id from another user is another message.
	other := pub("bob", "mine")
	other.ClientMsgID = "c-1"
	if r := mustEnqueue(t, b, other); r.Duplicate || r.CacheID != 3 {
		t.Fatalf("bob's message = %+v, want new id 3", r)
	}
	if diff := cmp.Diff([]int64{1, 2, 3}, ringIDs(t, b, b.keys.PublicRing())); diff != "" {
		t.Errorf("ring (-want +got):\n%s", diff)
	}
	if n := len(streamEntries(t, b, message.Public)); n != 3 {
		t.Errorf("stream holds %d entries, want 3", n)
	}
	ttl, _ := testenv.Do(t, b.client, "TTL", b.keys.ClientMsg(b.keys.Route(message.Public, "alice", "", ""), "alice", "c-1")).AsInt64()
	if ttl <= 23*3600 || ttl > 24*3600 {
		t.Errorf("client id TTL = %ds, want about 24h", ttl)
	}
}

func TestIDsUnderConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	const producers, each = 64, 50
	got := make([][]int64, producers)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				r, err := b.scripts.Enqueue(context.Background(), pub(fmt.Sprintf("u%d", p), strconv.Itoa(i)))
				if err != nil {
					t.Error(err)
					return
				}
				got[p] = append(got[p], r.CacheID)
			}
		})
	}
	wg.Wait()
	var all []int64
	for p, ids := range got {
		if !slices.IsSorted(ids) {
			t.Fatalf("producer %d saw ids %v, not strictly increasing", p, ids)
		}
		all = append(all, ids...)
	}
	slices.Sort(all)
	for i, id := range all {
		if id != int64(i+1) {
			t.Fatalf("ids sorted: position %d holds %d, want %d: a gap or a repeat", i, id, i+1)
		}
	}
	// The stream holds them in id order.
	entries := streamEntries(t, b, message.Public)
	for i, e := range entries {
		if e.CacheID != strconv.Itoa(i+1) {
			t.Fatalf("stream entry %d has cache id %s, want %d", i, e.CacheID, i+1)
		}
	}
	if len(entries) != producers*each {
		t.Fatalf("stream holds %d entries, want %d", len(entries), producers*each)
	}
}

func TestEnqueueMany(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	setRate(t, b, store.RateLimit{Limit: 2, WindowSeconds: 60, Algorithm: store.Fixed})
	msgs := []store.Message{pub("a", "1"), pub("b", "1"), pub("a", "2"), pub("a", "3"), pub("b", "2")}
	msgs[4].ClientMsgID = "x"
	// The first run also proves the reload on NOSCRIPT inside a pipeline.
	testenv.Do(t, b.client, "SCRIPT", "FLUSH")
	out := b.scripts.EnqueueMany(context.Background(), message.Public, msgs)
	type res struct {
		ID          int64
		RateLimited bool
	}
	var got []res
	for _, o := range out {
		if o.Err != nil && !errors.Is(o.Err, store.ErrRateLimited) {
			t.Fatalf("unexpected error: %v", o.Err)
		}
		got = append(got, res{o.CacheID, o.Err != nil})
	}
	want := []res{{1, false}, {2, false}, {3, false}, {0, true}, {4, false}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("outcomes (-want +got):\n%s", diff)
	}
}

func TestReloadAfterScriptFlush(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	mustEnqueue(t, b, pub("a", "1"))
	testenv.Do(t, b.client, "SCRIPT", "FLUSH")
	if r := mustEnqueue(t, b, pub("a", "2")); r.CacheID != 2 {
		t.Fatalf("cache id = %d, want 2", r.CacheID)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	ctx := context.Background()
	mustEnqueue(t, b, pub("a", "1"))
	mustEnqueue(t, b, pub("a", "2"))
	// An entry that another producer wrote with other spacing is found too.
	testenv.Do(t, b.client, "RPUSH", b.keys.PublicRing(), `{ "cache_id" : 2, "data": {}}`)
	if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Public, CacheID: 2}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{1}, ringIDs(t, b, b.keys.PublicRing())); diff != "" {
		t.Errorf("ring (-want +got):\n%s", diff)
	}
	entries := streamEntries(t, b, message.Public)
	if last := entries[len(entries)-1]; last != (streamEntry{"2", "delete", ""}) {
		t.Errorf("last stream entry = %+v, want a deletion of 2", last)
	}
	for _, id := range []int64{0, -1, 3} {
		if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Public, CacheID: id}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Delete(%d) = %v, want ErrNotFound", id, err)
		}
	}
}

func TestMirrorWhileProducing(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{MirrorChunk: 37})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	list := b.keys.LegacyFlushList(message.Public)
	const total = 3000
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			for i := p; i < total; i += 4 {
				entry := fmt.Sprintf(`{"cache_id":%d,"data":{"content":"legacy"}}`, i+1)
				if err := b.client.Do(ctx, b.client.B().Rpush().Key(list).Element(entry).Build()).Error(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// One entry a legacy producer mangled: moved all the same, for the worker to dead-letter.
	testenv.Do(t, b.client, "RPUSH", list, "not json")
	producing := make(chan struct{})
	go func() { wg.Wait(); close(producing) }()
	var moved int64
	for done := false; !done; {
		select {
		case <-producing:
			done = true
		default:
		}
		n, err := b.scripts.MirrorAll(ctx, message.Public)
		if err != nil {
			t.Fatal(err)
		}
		moved += n
	}
	if moved != total+1 {
		t.Fatalf("moved %d entries, want %d", moved, total+1)
	}
	seen := map[string]int{}
	for _, e := range streamEntries(t, b, message.Public) {
		seen[e.CacheID]++
		if e.Kind != "message" {
			t.Fatalf("entry kind %q, want message", e.Kind)
		}
	}
	for i := 1; i <= total; i++ {
		if n := seen[strconv.Itoa(i)]; n != 1 {
			t.Fatalf("cache id %d is in the stream %d times, want once", i, n)
		}
	}
	if seen[""] != 1 {
		t.Fatalf("the unreadable entry is in the stream %d times, want once", seen[""])
	}
	if n, _ := testenv.Do(t, b.client, "LLEN", list).AsInt64(); n != 0 {
		t.Fatalf("legacy list still holds %d entries", n)
	}
}

func TestMirrorRespectsCap(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{BacklogCap: 5})
	list := b.keys.LegacyFlushList(message.Private)
	for i := range 8 {
		testenv.Do(t, b.client, "RPUSH", list, fmt.Sprintf(`{"cache_id":%d,"data":{}}`, i+1))
	}
	moved, err := b.scripts.MirrorAll(context.Background(), message.Private)
	if err != nil || moved != 5 {
		t.Fatalf("moved %d (err %v), want 5", moved, err)
	}
	if n, _ := testenv.Do(t, b.client, "LLEN", list).AsInt64(); n != 3 {
		t.Fatalf("%d entries left in the legacy list, want 3", n)
	}
	if e := streamEntries(t, b, message.Private); e[0].Kind != "private_message" {
		t.Fatalf("kind = %q, want private_message", e[0].Kind)
	}
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{Timeout: 300 * time.Millisecond})
	mustEnqueue(t, b, pub("a", "1"))
	b.server.Stop()
	start := time.Now()
	_, err := b.scripts.Enqueue(context.Background(), pub("a", "2"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if err := b.scripts.Ping(context.Background()); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping = %v, want ErrUnavailable", err)
	}
	b.server.Restart()
	// The client reconnects by itself; the restarted server has forgotten the scripts.
	var r store.Result
	for range 50 {
		if r, err = b.scripts.Enqueue(context.Background(), pub("a", "3")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil || r.CacheID != 1 {
		t.Fatalf("after restart: %+v, %v; want cache id 1 of the empty server", r, err)
	}
	t.Logf("unavailable reported after %s", time.Since(start))
}

func TestHungServerTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{Timeout: 200 * time.Millisecond})
	mustEnqueue(t, b, pub("a", "1"))
	b.server.Pause()
	defer b.server.Resume()
	start := time.Now()
	_, err := b.scripts.Enqueue(context.Background(), pub("a", "2"))
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a hung server held the call for %s, want about the 200ms timeout", d)
	}
}

// TestEnqueueCommand: the command line given to tools does what Enqueue does.
func TestEnqueueCommand(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	mustEnqueue(t, b, pub("alice", "first")) // loads the script
	cmd := b.scripts.EnqueueCommand(pub("bob", "hi"))
	for _, a := range cmd {
		if strings.ContainsRune(a, 0) {
			t.Fatalf("argument %q holds a NUL byte: it cannot be a process argument (valkey-benchmark)", a)
		}
	}
	res, err := testenv.Do(t, b.client, cmd...).ToArray()
	if err != nil || len(res) != 2 {
		t.Fatalf("raw EVALSHA: %v, %v", res, err)
	}
	if id, _ := res[1].AsInt64(); id != 2 {
		t.Fatalf("raw EVALSHA gave cache id %d, want 2", id)
	}
	got := streamEntries(t, b, message.Public)
	want := streamEntry{"2", "message", `{"cache_id":2,"version":2,"data":{"content":"hi","owner_id":"bob","username":"bob"}}`}
	if len(got) != 2 || got[1] != want {
		t.Fatalf("stream after the raw EVALSHA: %+v", got)
	}
}
