package store_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// replicated starts a primary with one replica in sync and returns Scripts on the primary.
func replicated(t *testing.T, cfg store.Config, args ...string) (*testBundle, *testenv.Valkey) {
	t.Helper()
	primary := testenv.StartValkey(t, args...)
	replica := testenv.StartReplica(t, primary, args...)
	c := primary.Client(t)
	keys, _ := keyspace.New("t:")
	cfg.Layout, cfg.DefaultRate = keys, unlimited
	s, err := store.Open(c, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{server: primary, client: c, scripts: s, keys: keys}, replica
}

// TestDurableReplica: with a replica acknowledging, enqueues are accepted; with the replica
// stopped (SIGSTOP) a message is still enqueued but answered NotDurableError with its id, once
// per batch; a retry with the same client_msg_id after the replica is back returns the same id,
// durable.
func TestDurableReplica(t *testing.T) {
	t.Parallel()
	// 1 s: a replica in sync acknowledges at once, but a machine busy with the other suites can
	// delay that past a shorter timeout.
	const timeout = time.Second
	b, replica := replicated(t, store.Config{Durability: store.DurableReplica, DurableTimeout: timeout})
	ctx := context.Background()
	if _, err := b.scripts.Enqueue(ctx, pub("a", "one")); err != nil {
		t.Fatalf("with a replica in sync: %v", err)
	}
	outs := b.scripts.EnqueueMany(ctx, message.Public, []store.Message{pub("a", "b1"), pub("a", "b2")})
	for i, o := range outs {
		if o.Err != nil {
			t.Fatalf("batch message %d: %v", i, o.Err)
		}
	}

	replica.Pause()
	m := pub("a", "while the replica is stopped")
	m.ClientMsgID = "retry-me"
	start := time.Now()
	_, err := b.scripts.Enqueue(ctx, m)
	var nde *store.NotDurableError
	if !errors.As(err, &nde) || nde.CacheID != 4 {
		t.Fatalf("replica stopped: err %v, want NotDurableError with id 4", err)
	}
	// Valkey keeps the WAIT's deadline in whole milliseconds of its own clock: it may end up to
	// a millisecond before ours says the timeout passed (a run measured 999.4 ms).
	if d := time.Since(start); d < timeout-10*time.Millisecond || d > 3*timeout {
		t.Errorf("the wait took %s, want about the %s timeout", d, timeout)
	}
	if n := len(streamEntries(t, b, message.Public)); n != 4 {
		t.Fatalf("stream holds %d entries, want 4: a message not durable is still enqueued", n)
	}
	start = time.Now()
	outs = b.scripts.EnqueueMany(ctx, message.Public, []store.Message{pub("a", "b3"), pub("a", "b4"), pub("a", "b5")})
	if d := time.Since(start); d > 5*timeout/2 {
		t.Errorf("a batch of 3 took %s: it must wait once (%s), not per message", d, timeout)
	}
	for i, o := range outs {
		if !errors.As(o.Err, &nde) || nde.CacheID != int64(5+i) {
			t.Fatalf("batch message %d: %v, want NotDurableError with id %d", i, o.Err, 5+i)
		}
	}

	replica.Resume()
	testenv.WaitFor(t, "the replica to catch up", 10*time.Second, func() bool {
		_, err := b.scripts.Enqueue(ctx, pub("z", "probe"))
		return err == nil
	})
	res, err := b.scripts.Enqueue(ctx, m)
	if err != nil || !res.Duplicate || res.CacheID != 4 {
		t.Fatalf("retry after the replica is back: %+v, %v; want id 4 again, durable", res, err)
	}
	replica.Pause()
	defer replica.Resume()
	if _, err := b.scripts.Enqueue(ctx, m); !errors.As(err, &nde) || nde.CacheID != 4 {
		t.Fatalf("a retry with the replica stopped: %v, want NotDurableError with id 4 (the retry must wait too)", err)
	}
}

// TestDurableFsync: under appendfsync always WAITAOF confirms each write.
func TestDurableFsync(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{Durability: store.DurableFsync})
	testenv.Do(t, b.client, "CONFIG", "SET", "appendonly", "yes")
	testenv.Do(t, b.client, "CONFIG", "SET", "appendfsync", "always")
	testenv.WaitFor(t, "the AOF rewrite to finish", 10*time.Second, func() bool {
		s, _ := testenv.Do(t, b.client, "INFO", "persistence").ToString()
		return strings.Contains(s, "aof_rewrite_in_progress:0") && strings.Contains(s, "aof_enabled:1")
	})
	for i := range 3 {
		if res, err := b.scripts.Enqueue(context.Background(), pub("a", strconv.Itoa(i))); err != nil || res.CacheID != int64(i+1) {
			t.Fatalf("enqueue %d: %+v, %v", i, res, err)
		}
	}
	testenv.Do(t, b.client, "CONFIG", "SET", "appendonly", "no")
	var nde *store.NotDurableError
	if _, err := b.scripts.Enqueue(context.Background(), pub("a", "aof off")); !errors.As(err, &nde) || nde.CacheID != 4 {
		t.Fatalf("with the AOF off: %v, want NotDurableError with id 4", err)
	}
}

// TestClockIDs: clock-floored ids start near (now − 2025-01-01) × 1024, rise strictly, stay
// exact below 2^53, and jump past a counter that went back (a replica promoted behind the
// old primary).
func TestClockIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{IDs: store.ClockIDs})
	ctx := context.Background()
	floor := (time.Now().UnixMilli() - 1735689600000) * 1024
	var last int64
	for i := range 50 {
		res, err := b.scripts.Enqueue(ctx, pub("a", strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if res.CacheID <= last || res.CacheID < floor || res.CacheID >= 1<<53 {
			t.Fatalf("id %d after %d (floor %d): want rising, floored, below 2^53", res.CacheID, last, floor)
		}
		last = res.CacheID
	}
	// The entry carries the id exactly, not in float notation.
	entries := streamEntries(t, b, message.Public)
	if got := entries[len(entries)-1].CacheID; got != strconv.FormatInt(last, 10) {
		t.Fatalf("stream cache_id %q, want %d", got, last)
	}
	testenv.Do(t, b.client, "SET", b.keys.Counter(message.Public), "7") // a counter that lost its last increments
	time.Sleep(2 * time.Millisecond)
	res, err := b.scripts.Enqueue(ctx, pub("a", "after"))
	if err != nil || res.CacheID <= last {
		t.Fatalf("after the counter went back: id %d, %v; want above %d", res.CacheID, err, last)
	}
}

// TestFull: under noeviction with memory full, enqueues fail with ErrFull and nothing is
// written; the probe fails too; once memory is freed both succeed.
func TestFull(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	ctx := context.Background()
	mustEnqueue(t, b, pub("a", "before"))
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory", "1")
	if _, err := b.scripts.Enqueue(ctx, pub("a", "while full")); !errors.Is(err, store.ErrFull) {
		t.Fatalf("enqueue while full: %v, want ErrFull", err)
	}
	outs := b.scripts.EnqueueMany(ctx, message.Public, []store.Message{pub("a", "x"), pub("b", "y")})
	for i, o := range outs {
		if !errors.Is(o.Err, store.ErrFull) {
			t.Fatalf("batch message %d while full: %v, want ErrFull", i, o.Err)
		}
	}
	if err := b.scripts.Probe(ctx); !errors.Is(err, store.ErrFull) {
		t.Fatalf("probe while full: %v, want ErrFull", err)
	}
	if n := len(streamEntries(t, b, message.Public)); n != 1 {
		t.Fatalf("stream holds %d entries, want 1: nothing may be written while full", n)
	}
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory", "0")
	if err := b.scripts.Probe(ctx); err != nil {
		t.Fatalf("probe after memory freed: %v", err)
	}
	if res := mustEnqueue(t, b, pub("a", "after")); res.CacheID != 2 {
		t.Fatalf("id %d after the full spell, want 2: a refused message takes no id", res.CacheID)
	}
}

// TestTransientReplies: a replica's READONLY is ErrUnavailable, not a raw error.
func TestTransientReplies(t *testing.T) {
	t.Parallel()
	b, replica := replicated(t, store.Config{})
	keys, _ := keyspace.New("t:")
	s, err := store.Open(replica.Client(t), store.Config{Layout: keys, DefaultRate: unlimited})
	if err != nil {
		t.Fatal(err)
	}
	_ = b
	if _, err := s.Enqueue(context.Background(), pub("a", "to a replica")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("enqueue on a replica: %v, want ErrUnavailable (READONLY passes with the failover)", err)
	}
}
