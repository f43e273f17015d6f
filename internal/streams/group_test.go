package streams_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestGroupBasics: a group created on a missing stream reads what is added, acks it, trims
// it, dead-letters atomically with the ack (once), and claims what an idle consumer left.
func TestGroupBasics(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	ctx := context.Background()
	mk := func(consumer string) *streams.Group {
		g, err := streams.NewGroup(c, streams.GroupConfig{Stream: "s", DeadLetter: "d", Group: "g", Consumer: consumer})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	a, b := mk("a"), mk("b")
	if err := a.Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx); err != nil {
		t.Fatalf("creating an existing group: %v", err)
	}
	for _, v := range []string{"1", "2", "3"} {
		testenv.Do(t, c, "XADD", "s", "*", "cache_id", v)
	}
	es, err := a.Read(ctx, ">", 10, 0)
	if err != nil || len(es) != 3 || es[0].Fields["cache_id"] != "1" {
		t.Fatalf("read: %v, %v", es, err)
	}
	if err := a.Ack(ctx, []string{es[0].ID}); err != nil {
		t.Fatal(err)
	}
	moved, errs := a.MoveToDeadLetter(ctx, []streams.Failed{{Entry: es[1], Error: "bad", Deliveries: 1}}, time.Now())
	if !moved[0] || errs[0] != nil {
		t.Fatalf("dead-letter: %v %v", moved, errs)
	}
	if again, _ := b.MoveToDeadLetter(ctx, []streams.Failed{{Entry: es[1], Error: "bad"}}, time.Now()); again[0] {
		t.Fatal("an entry no longer pending was dead-lettered twice")
	}
	if n, _ := testenv.Do(t, c, "XLEN", "d").AsInt64(); n != 1 {
		t.Fatalf("dead letters: %d, want 1", n)
	}
	time.Sleep(20 * time.Millisecond)
	_, claimed, _, err := b.Claim(ctx, "0-0", 10, 10*time.Millisecond)
	if err != nil || len(claimed) != 1 || claimed[0].ID != es[2].ID {
		t.Fatalf("claim: %v, %v; want the third entry", claimed, err)
	}
	if err := b.Ack(ctx, []string{es[2].ID}); err != nil {
		t.Fatal(err)
	}
	if n, err := a.Trim(ctx, 0); err != nil || n != 3 {
		t.Fatalf("trim: %d, %v; want 3", n, err)
	}
	if ok, err := a.DelConsumer(ctx, "a", 0); err != nil || !ok {
		t.Fatalf("leaving: %v, %v", ok, err)
	}
}

// TestGroupWaitsForReplicas: with Replicas, a read while the replica is stopped does not
// return its entries; it waits on its connection and returns them once the replica is back,
// delivered once (no re-read counted as a delivery). With the context ended first the entries
// stay pending, ErrNotReplicated is returned and Unconfirmed reports it.
func TestGroupWaitsForReplicas(t *testing.T) {
	t.Parallel()
	primary, replica, c, g := replicatedGroup(t)
	ctx := context.Background()
	replica.Pause()
	testenv.Do(t, c, "XADD", "s", "*", "cache_id", "2")
	type result struct {
		es  []streams.Entry
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		es, err := g.Read(ctx, ">", 10, 0)
		done <- result{es, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("read returned %v, %v while the replica is stopped", r.es, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	replica.Resume()
	r := <-done
	if r.err != nil || len(r.es) != 1 || r.es[0].Fields["cache_id"] != "2" {
		t.Fatalf("read after the replica is back: %v, %v", r.es, r.err)
	}
	if n, _ := g.Deliveries(ctx, []string{r.es[0].ID}); n[r.es[0].ID] != 1 {
		t.Fatalf("delivered %d times, want 1: waiting must not re-read", n[r.es[0].ID])
	}
	t.Logf("read returned %s after the replica stopped", time.Since(start).Round(time.Millisecond))

	replica.Pause()
	defer replica.Resume()
	testenv.Do(t, c, "XADD", "s", "*", "cache_id", "3")
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := g.Read(cctx, ">", 10, 0); !errors.Is(err, streams.ErrNotReplicated) {
		t.Fatalf("read ended while the replica is stopped: %v, want ErrNotReplicated", err)
	}
	if !g.Unconfirmed() || g.Unconfirmed() {
		t.Fatal("Unconfirmed should report the read once")
	}
	// Reading the pending list again writes nothing replication carries, and a WAIT on a
	// connection that wrote nothing counts every replica: on a fresh client (the same consumer,
	// as after a restart) it must still not pass for a confirmation while the replica is stopped.
	fresh, err := streams.NewGroup(primary.Client(t), streams.GroupConfig{Stream: "s", DeadLetter: "d", Group: "g", Consumer: "a",
		Replicas: 1, ReplicaTimeout: 50 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cctx2, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	if es, err := fresh.Read(cctx2, "0", 10, 0); !errors.Is(err, streams.ErrNotReplicated) {
		t.Fatalf("history read while the replica is stopped: %v, %v; want ErrNotReplicated", es, err)
	}
	g.Unconfirmed()
	if p, _ := testenv.Do(t, c, "XPENDING", "s", "g").ToArray(); len(p) == 0 {
		t.Fatal("no XPENDING reply")
	} else if n, _ := p[0].AsInt64(); n != 3 {
		t.Fatalf("%d pending, want 3 (the unconfirmed entry stays pending)", n)
	}
}

// TestGroupBlockedReadWaitsForReplicas: a read that blocked until an entry arrived must not
// pass for confirmed while the replica lacks the entry. Valkey sets a connection's write offset
// (what WAIT waits for) only for a command that propagated when it ran; a blocked XREADGROUP
// served later by another client's XADD leaves it at the connection's previous write, and a
// WAIT after it answers at once with every replica that had that. Measured on Valkey 8.0: WAIT
// 1 answered 1 with the replica stopped. A worker that trusted it wrote rows for entries a
// promoted replica never had, and a retried client_msg_id became a second row.
func TestGroupBlockedReadWaitsForReplicas(t *testing.T) {
	t.Parallel()
	// After replicatedGroup's first read the connection's write offset is one the replica
	// acknowledged.
	_, replica, c, g := replicatedGroup(t)
	ctx := context.Background()
	replica.Pause()
	defer replica.Resume()
	type result struct {
		es  []streams.Entry
		err error
	}
	done := make(chan result, 1)
	rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	go func() {
		es, err := g.Read(rctx, ">", 10, 2*time.Second)
		done <- result{es, err}
	}()
	time.Sleep(300 * time.Millisecond) // the read is blocked by now
	testenv.Do(t, c, "XADD", "s", "*", "cache_id", "2")
	r := <-done
	if !errors.Is(r.err, streams.ErrNotReplicated) {
		t.Fatalf("a blocked read served while the replica is stopped returned %v, %v; want ErrNotReplicated", r.es, r.err)
	}
}

// replicatedGroup is a primary with a replica in sync and a group on it that waits for one
// replica, which has read and confirmed a first entry.
func replicatedGroup(t *testing.T) (primary, replica *testenv.Valkey, c valkey.Client, g *streams.Group) {
	t.Helper()
	primary = testenv.StartValkey(t)
	replica = testenv.StartReplica(t, primary)
	c = primary.Client(t)
	g, err := streams.NewGroup(c, streams.GroupConfig{Stream: "s", DeadLetter: "d", Group: "g", Consumer: "a",
		Replicas: 1, ReplicaTimeout: 50 * time.Millisecond, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := g.Create(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Do(t, c, "XADD", "s", "*", "cache_id", "1")
	if es, err := g.Read(ctx, ">", 10, 0); err != nil || len(es) != 1 {
		t.Fatalf("read with the replica up: %v, %v", es, err)
	}
	return primary, replica, c, g
}
