package chaos_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	chatpipe "github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestClientRidesOutOutages is issue 23's fourth proof, on the real binaries: clients send
// through the Go client while the replica is paused for 3 s (ingest answers 503 not_durable under
// INGEST_DURABILITY=replica) and then the primary is stopped for 3 s (503 unavailable). Every
// send the client reported successful is in PostgreSQL exactly once, with its content; the
// sends it reported failed may or may not be (their outcome was unknown), but never twice.
func TestClientRidesOutOutages(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries")
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	primary := testenv.StartValkey(t, "--appendonly", "yes", "--appendfsync", "always")
	_, port, _ := strings.Cut(primary.Addr, ":")
	replica := testenv.StartValkey(t, "--replicaof", "127.0.0.1", port)
	vc := primary.Client(t)
	testenv.WaitFor(t, "the replica in sync", 10*time.Second, func() bool {
		s, _ := testenv.Do(t, vc, "INFO", "replication").ToString()
		return strings.Contains(s, "state=online")
	})
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: []string{"VALKEY_ADDR=" + primary.Addr}, dsn: dsn}
	in, base := d.ingest(t, "ingest", "INGEST_DURABILITY=replica", "INGEST_DURABILITY_TIMEOUT=200ms", "VALKEY_TIMEOUT=500ms")
	w := d.worker(t, "w1")
	in.start(t)
	w.start(t)
	killOnCleanup(t, in, w)
	testenv.WaitReady(t, base+"/readyz", 30*time.Second)

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

	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	rows := map[int64]string{}
	count := map[string]int{}
	r, err := conn.Query(t.Context(), "SELECT cache_id, content FROM chat_messages")
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var id int64
		var content string
		_ = r.Scan(&id, &content)
		rows[id] = content
		count[content]++
	}
	r.Close()
	missing := 0
	for id, content := range ok {
		if rows[id] != content {
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
