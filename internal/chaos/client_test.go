package chaos_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	chatpipe "github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestClientRidesOutOutages, on the real binaries: clients send
// through the Go client while the replica is paused for 3 s (ingest answers 503 not_durable under
// INGEST_DURABILITY=replica) and then the primary is stopped for 3 s (503 unavailable). Every
// send the client reported successful is in PostgreSQL exactly once, with its content; the
// sends it reported failed may or may not be (their outcome was unknown), but never twice.
func TestClientRidesOutOutages(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries")
	primary := testenv.StartValkey(t, "--appendonly", "yes", "--appendfsync", "always")
	replica := testenv.StartReplica(t, primary)
	vc := primary.Client(t)
	d := newDeployment(t, "VALKEY_ADDR="+primary.Addr)
	dsn := d.dsn
	_, _, base := d.pair(t, []string{"INGEST_DURABILITY=replica", "INGEST_DURABILITY_TIMEOUT=200ms", "VALKEY_TIMEOUT=500ms"}, nil)

	c, err := chatpipe.New(base, chatpipe.WithHTTPClient(keepAlive(3*time.Second)),
		chatpipe.WithRetry(chatpipe.RetryPolicy{Attempts: 100, Min: 100 * time.Millisecond, Max: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithTimeout(context.Background(), 14*time.Second)
	defer stop()
	var mu sync.Mutex
	ok := map[int64]string{} // cache id → content, of the sends reported successful
	failed := 0
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				content := fmt.Sprintf("g%d-%d", g, i)
				sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				a, err := c.Send(sctx, chatpipe.Draft{OwnerID: fmt.Sprintf("u%d", g), Content: content, Channel: "ops"})
				cancel()
				mu.Lock()
				if err != nil {
					failed++
				} else if prev, dup := ok[a.CacheID]; dup && prev != content {
					t.Errorf("cache id %d given to %s and %s", a.CacheID, prev, content)
				} else {
					ok[a.CacheID] = content
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(2 * time.Second)
	replica.Pause() // WAIT falls short: 503 not_durable, retried with the same client_msg_id
	time.Sleep(3 * time.Second)
	replica.Resume()
	time.Sleep(2 * time.Second)
	primary.Stop() // 503 unavailable
	time.Sleep(3 * time.Second)
	primary.Restart()
	wg.Wait()
	waitDrained(t, vc)
	// The faults were met: ingest answered not_durable while the replica was paused.
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	notDurable := 0.0
	for _, line := range strings.Split(string(metrics), "\n") {
		if strings.HasPrefix(line, "chatpipe_ingest_messages_not_durable_total{") {
			var v float64
			_, _ = fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			notDurable += v
		}
	}
	if notDurable == 0 {
		t.Error("ingest never answered not_durable: the replica's pause proved nothing")
	}

	rows := publicRows(t, dsn)
	count := map[string]int{}
	for _, row := range rows {
		count[row.content]++
	}
	missing := 0
	for id, content := range ok {
		if rows[id].content != content {
			missing++
		}
	}
	twice := 0
	for content, n := range count {
		if n > 1 {
			twice++
			t.Errorf("%q is in PostgreSQL %d times", content, n)
		}
	}
	t.Logf("%d sends reported successful (%.0f answered not_durable first), %d failed; %d rows; %d successful sends missing, %d stored twice", len(ok), notDurable, failed, len(rows), missing, twice)
	if missing > 0 || len(ok) == 0 {
		t.Errorf("%d of %d successful sends are not in PostgreSQL", missing, len(ok))
	}
}

// TestClientTailAcrossRestart, on the real binaries: the Go client's
// tail follows a channel while ingest is restarted (the connection is lost; the client resumes
// with its cursor) and, the second time, stays down while the worker trims past the cursor
// (FLUSH_TAIL_RETENTION=0: the resume is answered 410, and the client bridges by history). The
// caller sees every message exactly once, in order.
func TestClientTailAcrossRestart(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries")
	v := testenv.StartValkey(t)
	d := newDeployment(t, "VALKEY_ADDR="+v.Addr)
	in, _, base := d.pair(t, []string{"DATABASE_URL=" + d.dsn}, []string{"FLUSH_TAIL_RETENTION=0s"})
	c, err := chatpipe.New(base, chatpipe.WithRetry(chatpipe.RetryPolicy{Attempts: 200, Min: 100 * time.Millisecond, Max: 300 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.Send(ctx, chatpipe.Draft{OwnerID: "ann", Content: fmt.Sprintf("m%03d", i), Channel: "lobby"}); err != nil {
				t.Error(err)
			}
		}
	}
	got := make(chan string, 1000)
	go func() {
		defer close(got)
		for ev, err := range c.Tail(ctx, chatpipe.TailQuery{Timeline: chatpipe.Timeline{Channel: "lobby"}}) {
			if err != nil {
				return
			}
			if ev.Type == "message" {
				got <- ev.Entry.Data.Content
			}
		}
	}()
	time.Sleep(time.Second) // the tail follows
	send(0, 50)
	in.stop() // a restart: the tail's connection is lost, and resumed with its cursor
	in.start(t)
	testenv.WaitReady(t, base+"/readyz", 30*time.Second)
	send(50, 100)
	in.stop() // down while the worker writes and trims past the tail's cursor: 410
	time.Sleep(time.Second)
	in.start(t)
	testenv.WaitReady(t, base+"/readyz", 30*time.Second)
	send(100, 150)
	var seen []string
	deadline := time.After(60 * time.Second)
	for len(seen) < 150 {
		select {
		case m, ok := <-got:
			if !ok {
				t.Fatalf("the tail ended after %d messages", len(seen))
			}
			seen = append(seen, m)
		case <-deadline:
			t.Fatalf("the tail gave %d of 150 messages", len(seen))
		}
	}
	for i, m := range seen {
		if want := fmt.Sprintf("m%03d", i); m != want {
			t.Fatalf("message %d of the tail is %s, want %s (every message once, in order): %v", i, m, want, seen)
		}
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	for m := range got {
		t.Errorf("after the 150, the tail gave %s again", m)
	}
}
