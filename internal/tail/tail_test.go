package tail_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/tail"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestSlowSubscriberDropped: a subscriber that reads nothing is dropped once its buffer is full,
// and the one reading beside it gets every event, in order, unstalled; the dropped one learns it
// (ErrDropped) after the events it holds. A subscriber may lag by the buffer, no more.
func TestSlowSubscriberDropped(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	keys, _ := keyspace.New("")
	tails, err := tail.New(tail.Config{Valkey: c, Layout: keys, Buffer: 32, Block: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tails.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	slow, err := tails.Subscribe(ctx, keyspace.Public, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := tails.Subscribe(ctx, keyspace.Public, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	const n = 100
	got := make(chan int, n)
	go func() {
		for range n {
			ev, ok, err := fast.Next(ctx, 5*time.Second)
			if err != nil || !ok {
				close(got)
				return
			}
			got <- len(ev.Data)
		}
		close(got)
	}()
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		testenv.Do(t, c, "XADD", keys.Stream(keyspace.Public), "*", "cache_id", id, "kind", "message",
			"payload", `{"cache_id":`+id+`,"data":{"owner_id":"a","username":"","content":"x","created_at":"2026-12-01T00:00:00Z"}}`)
		if i%2 == 0 {
			time.Sleep(10 * time.Millisecond) // bursts smaller than the buffer, which a reader keeps up with
		}
	}
	received := 0
	for range got {
		received++
	}
	if received != n {
		t.Errorf("the reading subscriber got %d of %d events", received, n)
	}
	held := 0
	for {
		_, ok, err := slow.Next(ctx, time.Second)
		if errors.Is(err, tail.ErrDropped) {
			break
		}
		if err != nil || !ok {
			t.Fatalf("the slow subscriber: %v, %t after %d events; want ErrDropped", err, ok, held)
		}
		held++
	}
	if held > 32 {
		t.Errorf("the slow subscriber held %d events past its buffer of 32", held)
	}
}
