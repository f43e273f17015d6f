package flush_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/flush"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type testBundle struct {
	valkey  *testenv.Valkey
	client  valkey.Client
	keys    keyspace.Keys
	scripts *store.Store
	pool    *pgxpool.Pool
	store   *pg.Store
	reg     *prometheus.Registry
	metrics *flush.Metrics
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	keys, _ := keyspace.New("")
	// The test's own enqueues get a long timeout: a batch of 500 against a Valkey shared with six
	// consumers, on a machine running the other suites, took more than the default second.
	scripts, err := store.Open(c, store.Config{Layout: keys, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pool := testenv.MigratedPool(t, testenv.Postgres(t), 8)
	reg := prometheus.NewRegistry()
	m, err := flush.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return &testBundle{valkey: v, client: c, keys: keys, scripts: scripts, pool: pool, store: pg.New(pool), reg: reg, metrics: m}
}

func (b *testBundle) config(name string) flush.Config {
	return flush.Config{
		Keys: b.keys, Consumer: name, Sink: b.store, Metrics: b.metrics,
		BatchSize: 100, FlushInterval: 50 * time.Millisecond, Block: 50 * time.Millisecond,
		TrimInterval: 50 * time.Millisecond, MinIdle: 30 * time.Second, Grace: 5 * time.Second,
		Logger: slog.New(slog.DiscardHandler),
	}
}

// start runs a consumer until the returned stop is called; stop waits for Run to return.
func (b *testBundle) start(t *testing.T, cfg flush.Config) (stop func()) {
	t.Helper()
	co, err := flush.New(b.client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- co.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("Run did not return within 15s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (b *testBundle) enqueue(t *testing.T, kind message.Kind, n int) []int64 {
	t.Helper()
	ids := make([]int64, 0, n)
	for i := 0; i < n; i += 500 {
		var msgs []store.Message
		for j := i; j < min(n, i+500); j++ {
			m := message.Message{OwnerID: fmt.Sprintf("u%d", j%7), RecipientID: "r", Username: "U", Content: fmt.Sprintf("msg %d", j), CreatedAt: "2026-11-25T10:00:00Z"}
			if kind == message.Public {
				m.RecipientID = ""
			}
			msgs = append(msgs, store.Message{OwnerID: m.OwnerID, RecipientID: m.RecipientID, Data: m.JSON()})
		}
		for _, o := range b.scripts.EnqueueMany(context.Background(), kind, msgs) {
			if o.Err != nil {
				t.Fatal(o.Err)
			}
			ids = append(ids, o.CacheID)
		}
	}
	return ids
}

func (b *testBundle) rows(t *testing.T, table string) (total, distinct int64) {
	t.Helper()
	err := b.pool.QueryRow(context.Background(), "SELECT count(*), count(DISTINCT cache_id) FROM "+table).Scan(&total, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	return total, distinct
}

// pending counts the group's pending entries; 0 until a consumer has created the group.
func (b *testBundle) pending(t *testing.T, kind message.Kind) int64 {
	t.Helper()
	r, err := b.client.Do(context.Background(), b.client.B().Xpending().Key(b.keys.Stream(kind)).Group("flushworkers").Build()).ToArray()
	if err != nil && strings.Contains(err.Error(), "NOGROUP") {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	n, _ := r[0].AsInt64()
	return n
}

func (b *testBundle) xlen(t *testing.T, key string) int64 {
	t.Helper()
	n, _ := testenv.Do(t, b.client, "XLEN", key).AsInt64()
	return n
}

func TestExactlyOnceWithThreeConsumers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 6000
	b.enqueue(t, message.Public, n/2)
	for i := range 3 {
		b.start(t, b.config(fmt.Sprintf("w%d", i)))
		cfg := b.config(fmt.Sprintf("w%d", i))
		cfg.Kind = message.Private
		b.start(t, cfg)
	}
	b.enqueue(t, message.Public, n/2) // while they run
	b.enqueue(t, message.Private, n)
	for _, table := range []string{"chat_messages", "private_messages"} {
		testenv.WaitFor(t, table+" rows", 30*time.Second, func() bool { total, _ := b.rows(t, table); return total >= n })
		if total, distinct := b.rows(t, table); total != n || distinct != n {
			t.Fatalf("%s: %d rows, %d distinct; want %d once each", table, total, distinct, n)
		}
	}
	for _, k := range message.Kinds {
		testenv.WaitFor(t, "stream trimmed", 10*time.Second, func() bool { return b.xlen(t, b.keys.Stream(k)) == 0 })
		if p := b.pending(t, k); p != 0 {
			t.Errorf("%s: %d entries still pending", k, p)
		}
	}
	if got := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_rows_persisted_total", "message")); got != n {
		t.Errorf("rows persisted metric = %v, want %d", got, n)
	}
}

func (b *testBundle) metricsCounter(t *testing.T, name, stream string, extra ...string) prometheus.Collector {
	t.Helper()
	v := 0.0
	families, _ := b.reg.Gather()
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["stream"] != stream {
				continue
			}
			for i := 0; i+1 < len(extra); i += 2 {
				if labels[extra[i]] != extra[i+1] {
					continue series
				}
			}
			v += m.GetCounter().GetValue()
		}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x", Help: "x"}, func() float64 { return v })
}

func ringEntry(id int, content, username string) string {
	m := message.Message{OwnerID: "u", Username: username, Content: content, CreatedAt: "2026-11-25T10:00:00Z"}
	return fmt.Sprintf(`{"cache_id":%d,"data":%s}`, id, m.JSON())
}

// TestBadEntriesAreIsolated: undecodable entries and rows Postgres refuses go to the
// dead-letter stream with the reason; every good one is written; a repeated cache id is
// neither dead-lettered nor duplicated; replay after the fix writes the dead letters.
func TestBadEntriesAreIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.keys.Stream(message.Public)
	add := func(fields ...string) {
		testenv.Do(t, b.client, append([]string{"XADD", stream, "*"}, fields...)...)
	}
	long := strings.Repeat("n", 65)
	add("cache_id", "1", "kind", "message", "payload", ringEntry(1, "good 1", "a"))
	add("cache_id", "2", "kind", "message", "payload", `{"cache_id":2,"data":{not json`)
	add("cache_id", "3", "kind", "message", "payload", ringEntry(3, "nul \x00 here", "a"))
	add("cache_id", "4", "kind", "message", "payload", ringEntry(4, "good 4", "a"))
	add("cache_id", "1", "kind", "message", "payload", ringEntry(1, "good 1", "a")) // a repeat
	add("cache_id", "5", "kind", "message", "payload", ringEntry(5, "long name", long))
	add("kind", "message", "payload", ringEntry(6, "x", "a"))                         // no cache_id
	add("cache_id", "7", "kind", "message")                                           // no payload
	add("cache_id", "8", "kind", "weird", "payload", ringEntry(8, "x", "a"))          // wrong kind
	add("cache_id", "9", "kind", "message", "payload", ringEntry(10, "x", "a"))       // ids differ
	add("cache_id", "11", "kind", "message", "payload", strings.Repeat("x", 100<<10)) // huge
	add("cache_id", "12", "kind", "message", "payload", ringEntry(12, "good 12", "a"))
	stop := b.start(t, b.config("w1"))
	dead := b.keys.DeadLetter(message.Public)
	testenv.WaitFor(t, "dead letters", 10*time.Second, func() bool { return b.xlen(t, dead) == 8 })
	testenv.WaitFor(t, "nothing pending", 10*time.Second, func() bool { return b.pending(t, message.Public) == 0 })
	if total, distinct := b.rows(t, "chat_messages"); total != 3 || distinct != 3 {
		t.Fatalf("rows: %d (%d distinct), want 1, 4 and 12 once each", total, distinct)
	}
	dl := streams.NewDeadLetters(b.client)
	letters, err := dl.List(context.Background(), b.keys.FlushStreams()[0], "", 100)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, l := range letters {
		for _, f := range []string{"error", "original_id", "deliveries", "consumer", "failed_at"} {
			if l.Fields[f] == "" {
				t.Errorf("dead letter %v lacks %s", l.Fields, f)
			}
		}
		if l.Fields["consumer"] != "w1" {
			t.Errorf("consumer = %q, want w1", l.Fields["consumer"])
		}
		reasons[l.Fields["cache_id"]] = l.Fields["error"]
	}
	for id, want := range map[string]string{"2": "not a ring entry", "3": "0x00", "5": "check constraint", "": "no cache_id",
		"7": "no payload", "8": "does not belong", "9": "differs", "11": "more than"} {
		if !strings.Contains(reasons[id], want) {
			t.Errorf("dead letter of cache id %q: error %q, want it to mention %q", id, reasons[id], want)
		}
	}
	if n := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_dead_lettered_total", "message", "reason", "rejected")); n != 2 {
		t.Errorf("dead-lettered{reason=rejected} = %v, want 2", n)
	}
	stop()

	// The fix: the name limit was too strict for these users. Replay writes cache id 5.
	if _, err := b.pool.Exec(context.Background(), "ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_username_check"); err != nil {
		t.Fatal(err)
	}
	for _, l := range letters {
		if l.Fields["cache_id"] == "5" {
			if id, err := dl.Replay(context.Background(), b.keys.FlushStreams()[0], l.ID); err != nil || id == "" {
				t.Fatalf("replay: %q, %v", id, err)
			}
		}
	}
	b.start(t, b.config("w2"))
	testenv.WaitFor(t, "replayed row", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 4 })
	if n := b.xlen(t, dead); n != 7 {
		t.Errorf("%d dead letters left, want 7", n)
	}
}

// TestReclaimAndPoison: entries left pending by a dead consumer are claimed and written;
// entries delivered too often are dead-lettered as poison; entries deleted while pending
// are counted as lost, not dropped silently; an idle consumer with nothing pending is removed.
func TestReclaimAndPoison(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.enqueue(t, message.Public, 10)
	stream := b.keys.Stream(message.Public)
	testenv.Do(t, b.client, "XGROUP", "CREATE", stream, "flushworkers", "0")
	got, err := testenv.Do(t, b.client, "XREADGROUP", "GROUP", "flushworkers", "ghost", "COUNT", "10", "STREAMS", stream, ">").AsXRead()
	if err != nil || len(got[stream]) != 10 {
		t.Fatalf("ghost read %v, %v", got, err)
	}
	entries := got[stream]
	// Entry 0 has been delivered many times already: poison.
	testenv.Do(t, b.client, "XCLAIM", stream, "flushworkers", "ghost", "0", entries[0].ID, "RETRYCOUNT", "9")
	// Entry 9 was deleted from the stream while pending.
	testenv.Do(t, b.client, "XDEL", stream, entries[9].ID)
	// A consumer that left long ago, with nothing pending.
	testenv.Do(t, b.client, "XGROUP", "CREATECONSUMER", stream, "flushworkers", "gone")

	cfg := b.config("w1")
	cfg.MinIdle = 200 * time.Millisecond
	cfg.ReclaimInterval = 100 * time.Millisecond
	cfg.JanitorIdle = 300 * time.Millisecond
	b.start(t, cfg)
	testenv.WaitFor(t, "reclaimed rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 8 })
	testenv.WaitFor(t, "nothing pending", 10*time.Second, func() bool { return b.pending(t, message.Public) == 0 })
	var first int64
	_ = b.pool.QueryRow(context.Background(), "SELECT count(*) FROM chat_messages WHERE cache_id = $1", ids[0]).Scan(&first)
	if first != 0 {
		t.Errorf("the poison entry was written")
	}
	letters, _ := streams.NewDeadLetters(b.client).List(context.Background(), b.keys.FlushStreams()[0], "", 10)
	if len(letters) != 1 || !strings.Contains(letters[0].Fields["error"], "poison") || letters[0].Fields["deliveries"] != "10" {
		t.Fatalf("dead letters = %v, want the poison entry with 10 deliveries", letters)
	}
	if n := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_entries_lost_total", "message")); n != 1 {
		t.Errorf("lost = %v, want 1", n)
	}
	if n := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_entries_reclaimed_total", "message")); n != 9 {
		t.Errorf("reclaimed = %v, want 9", n)
	}
	testenv.WaitFor(t, "janitor", 10*time.Second, func() bool {
		cs, _ := testenv.Do(t, b.client, "XINFO", "CONSUMERS", stream, "flushworkers").ToArray()
		for _, c := range cs {
			m, _ := c.AsStrMap()
			if m["name"] == "gone" || m["name"] == "ghost" {
				return false
			}
		}
		return true
	})
}

// lockedTable holds an ACCESS EXCLUSIVE lock on chat_messages in tx, and returns a consumer
// config whose sink gives up waiting for it after 100ms (lock_timeout: SQLSTATE 55P03, a real
// transient error). Commit tx to let writes through.
func (b *testBundle) lockedTable(t *testing.T) (flush.Config, pgx.Tx) {
	t.Helper()
	ctx := context.Background()
	cfgPool := b.pool.Config().Copy()
	cfgPool.ConnConfig.RuntimeParams["lock_timeout"] = "100ms"
	pool, err := pgxpool.NewWithConfig(ctx, cfgPool)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, "LOCK TABLE chat_messages IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	cfg := b.config("w1")
	cfg.Sink = pg.New(pool)
	return cfg, tx
}

// TestTransientErrorsRetry: a write that Postgres refuses for a passing reason (here a lock
// timeout while another session holds the table) is retried, never dead-lettered.
func TestTransientErrorsRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cfg, tx := b.lockedTable(t)
	b.start(t, cfg)
	b.enqueue(t, message.Public, 50)
	testenv.WaitFor(t, "retries", 10*time.Second, func() bool {
		return testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_transient_retries_total", "message", "class", "55")) >= 2
	})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "rows after the lock", 15*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 50 })
	if n := b.xlen(t, b.keys.DeadLetter(message.Public)); n != 0 {
		t.Fatalf("%d dead letters after a transient error, want 0", n)
	}
}

// TestShutdownWritesBatchInHand: a consumer holding a batch it cannot write yet (PostgreSQL
// refuses it for a lock held elsewhere) keeps it — its retries touch the entries, so another
// replica reclaiming aggressively takes none — and when stopped writes and acks it within the
// grace period, and leaves the group. (Batches are written as soon as nothing more waits, so a
// batch is in hand only while its write does not go through.)
func TestShutdownWritesBatchInHand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg, tx := b.lockedTable(t)
	cfg.BatchSize = 1000
	cfg.MinIdle = 2 * time.Second
	b.enqueue(t, message.Public, 25) // before w1 starts: its first read takes them all
	stop := b.start(t, cfg)
	testenv.WaitFor(t, "w1 to hold the entries", 5*time.Second, func() bool { return b.pending(t, message.Public) == 25 })
	other := b.config("w2")
	other.MinIdle = 2 * time.Second
	other.ReclaimInterval = 100 * time.Millisecond
	b.start(t, other)
	time.Sleep(2500 * time.Millisecond)
	if p := b.pending(t, message.Public); p != 25 { // the table is locked: nothing can be written
		t.Fatalf("%d pending while the table is locked, want 25", p)
	}
	if n := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_entries_reclaimed_total", "message")); n != 0 {
		t.Errorf("%v entries were reclaimed from a live consumer that holds them", n)
	}
	unlocked := make(chan struct{})
	go func() {
		defer close(unlocked)
		time.Sleep(300 * time.Millisecond) // released during w1's grace period
		_ = tx.Commit(context.Background())
	}()
	stop()
	<-unlocked
	if total, _ := b.rows(t, "chat_messages"); total != 25 {
		t.Fatalf("%d rows after shutdown, want 25", total)
	}
	if p := b.pending(t, message.Public); p != 0 {
		t.Fatalf("%d pending after shutdown, want 0", p)
	}
	cs, _ := testenv.Do(t, b.client, "XINFO", "CONSUMERS", b.keys.Stream(message.Public), "flushworkers").ToArray()
	for _, c := range cs {
		if m, _ := c.AsStrMap(); m["name"] == "w1" {
			t.Errorf("w1 is still a consumer after a clean shutdown with nothing pending")
		}
	}
}

// TestTrimKeepsPending: the stream is trimmed only below the oldest entry still pending.
func TestTrimKeepsPending(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.keys.Stream(message.Public)
	b.enqueue(t, message.Public, 5)
	testenv.Do(t, b.client, "XGROUP", "CREATE", stream, "flushworkers", "0")
	testenv.Do(t, b.client, "XGROUP", "CREATE", stream, "auditors", "0") // a second group reading slowly
	testenv.Do(t, b.client, "XREADGROUP", "GROUP", "flushworkers", "ghost", "COUNT", "1", "STREAMS", stream, ">")
	b.enqueue(t, message.Public, 20)
	b.start(t, b.config("w1"))
	testenv.WaitFor(t, "rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 24 })
	time.Sleep(200 * time.Millisecond)
	if n := b.xlen(t, stream); n != 25 {
		t.Fatalf("stream holds %d entries, want all 25: the auditors group has read none", n)
	}
	testenv.Do(t, b.client, "XGROUP", "DESTROY", stream, "auditors")
	time.Sleep(200 * time.Millisecond)
	if n := b.xlen(t, stream); n != 25 {
		t.Fatalf("stream holds %d entries, want 25: the ghost's pending entry is the first", n)
	}
}

// TestDeleteBeforeAndAfterFlush: a deletion removes the row whichever it meets first.
func TestDeleteBeforeAndAfterFlush(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.enqueue(t, message.Public, 3)
	ctx := context.Background()
	// Deleted before any worker ran: the insert and the deletion meet in one batch.
	if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Public, CacheID: ids[0]}); err != nil {
		t.Fatal(err)
	}
	b.start(t, b.config("w1"))
	testenv.WaitFor(t, "rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 2 })
	// Deleted after its row was written.
	if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Public, CacheID: ids[1]}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, "row deleted", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 1 })
}

// TestQueueMonitor: exactly one replica exports the queue gauges, with the stream's state.
func TestQueueMonitor(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.keys.Stream(message.Public)
	b.enqueue(t, message.Public, 7)
	testenv.Do(t, b.client, "XGROUP", "CREATE", stream, "flushworkers", "0")
	testenv.Do(t, b.client, "XREADGROUP", "GROUP", "flushworkers", "ghost", "COUNT", "3", "STREAMS", stream, ">")
	testenv.Do(t, b.client, "XADD", b.keys.DeadLetter(message.Public), "*", "cache_id", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	for i, reg := range regs {
		m := streams.NewQueueMonitor(b.client, b.keys.FlushStreams(), b.keys.QueueMonitorLease(), "flushworkers", fmt.Sprintf("r%d", i), 50*time.Millisecond, slog.New(slog.DiscardHandler))
		reg.MustRegister(m)
		go func() { _ = m.Run(ctx) }()
	}
	get := func(reg *prometheus.Registry, name string) (float64, bool) {
		families, _ := reg.Gather()
		for _, f := range families {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				if len(m.GetLabel()) == 0 {
					return m.GetGauge().GetValue(), true
				}
				for _, l := range m.GetLabel() {
					if l.GetName() == "stream" && l.GetValue() == "message" {
						return m.GetGauge().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	testenv.WaitFor(t, "a leader", 5*time.Second, func() bool {
		a, _ := get(regs[0], "chatpipe_queue_monitor_leader")
		c, _ := get(regs[1], "chatpipe_queue_monitor_leader")
		return a+c == 1
	})
	leader := regs[0]
	if v, _ := get(regs[1], "chatpipe_queue_monitor_leader"); v == 1 {
		leader, regs[1] = regs[1], regs[0]
	}
	testenv.WaitFor(t, "stats", 5*time.Second, func() bool { _, ok := get(leader, "chatpipe_queue_stream_length"); return ok })
	want := map[string]float64{"chatpipe_queue_stream_length": 7, "chatpipe_queue_group_lag": 4, "chatpipe_queue_pending": 3, "chatpipe_queue_dead_letters": 1, "chatpipe_queue_consumers": 1}
	for name, v := range want {
		if got, _ := get(leader, name); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
		if _, ok := get(regs[1], name); ok {
			t.Errorf("the follower exports %s too: sums would count it twice", name)
		}
	}
	if age, _ := get(leader, "chatpipe_queue_oldest_pending_age_seconds"); age <= 0 || age > 60 {
		t.Errorf("oldest pending age = %v, want a few seconds at most", age)
	}
}

// TestShutdownDuringRetry: a stop that comes while a batch is being retried writes it within
// the grace period once PostgreSQL takes it again.
func TestShutdownDuringRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	cfg, tx := b.lockedTable(t)
	b.enqueue(t, message.Public, 10) // before the start: the first read takes all ten (group commit writes what one read found)
	stop := b.start(t, cfg)
	testenv.WaitFor(t, "retries", 10*time.Second, func() bool {
		return testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_transient_retries_total", "message", "class", "55")) >= 1
	})
	committed := make(chan struct{})
	go func() {
		defer close(committed)
		time.Sleep(500 * time.Millisecond)
		_ = tx.Commit(ctx)
	}()
	stopAt := time.Now()
	stop() // grace 5s
	t.Logf("stopped %s after the cancel", time.Since(stopAt))
	<-committed
	if total, _ := b.rows(t, "chat_messages"); total != 10 {
		t.Fatalf("%d rows after a stop during retries, want the 10 of the batch in hand", total)
	}
	if p := b.pending(t, message.Public); p != 0 {
		t.Fatalf("%d pending", p)
	}
}

// TestGroupRecreated: when the stream and its group vanish (Valkey restarted without its
// data), the consumer creates the group again and goes on.
func TestGroupRecreated(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.start(t, b.config("w1"))
	b.enqueue(t, message.Public, 5)
	testenv.WaitFor(t, "rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 5 })
	testenv.Do(t, b.client, "DEL", b.keys.Stream(message.Public))
	b.enqueue(t, message.Public, 5)
	testenv.WaitFor(t, "rows after the group came back", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 10 })
}

// TestPrivateDeleteClearsRings: a private deletion taken without its users (ingest without
// PostgreSQL, the message already flushed) leaves the rings to the worker, which clears both
// users' rings once PostgreSQL named them; one deleted before its write is cleared too.
func TestPrivateDeleteClearsRings(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := b.enqueue(t, message.Private, 4) // owners u0..u3, recipient r
	cfg := b.config("w1")
	cfg.Kind, cfg.ForgetFunc = message.Private, b.scripts.ForgetPrivate
	stop := b.start(t, cfg)
	testenv.WaitFor(t, "rows", 10*time.Second, func() bool { return len(rowIDs(t, b, "private_messages")) == 4 })
	stop()
	// Flushed first, then deleted without its users; and one deleted before any worker wrote it.
	if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Private, CacheID: ids[0], OwnerID: "", RecipientID: ""}); err != nil {
		t.Fatal(err)
	}
	late := b.enqueue(t, message.Private, 1)[0]
	if err := b.scripts.Delete(ctx, message.Ref{Kind: message.Private, CacheID: late, OwnerID: "", RecipientID: ""}); err != nil {
		t.Fatal(err)
	}
	inRing := func(user string, id int64) bool {
		v, _ := testenv.Do(t, b.client, "LRANGE", b.keys.PrivateRing(user), "0", "-1").AsStrSlice()
		return slices.ContainsFunc(v, func(e string) bool { return strings.HasPrefix(e, fmt.Sprintf(`{"cache_id":%d,`, id)) })
	}
	if !inRing("u0", ids[0]) || !inRing("r", ids[0]) {
		t.Fatal("the rings lost the message before the worker ran: the test sees nothing")
	}
	b.start(t, cfg)
	testenv.WaitFor(t, "the worker to clear the rings", 10*time.Second, func() bool {
		return !inRing("u0", ids[0]) && !inRing("r", ids[0]) && !inRing("u0", late) && !inRing("r", late)
	})
	if !inRing("u1", ids[1]) || !inRing("r", ids[1]) {
		t.Error("a message not deleted left the rings")
	}
	if got := rowIDs(t, b, "private_messages"); slices.Contains(got, ids[0]) || slices.Contains(got, late) {
		t.Errorf("rows %v hold a deleted message", got)
	}
}

func rowIDs(t *testing.T, b *testBundle, table string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), "SELECT cache_id FROM "+table+" ORDER BY cache_id")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestEntriesFromBeforeChannels: a worker upgraded before ingest (the rolling upgrade's order)
// takes entries written by an ingest from before channels — no channel_id anywhere — into its
// DEFAULT_CHANNEL, and entries naming a channel into theirs.
func TestEntriesFromBeforeChannels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	stream := b.keys.Stream(message.Public)
	old := `{"cache_id":1,"data":{"owner_id":"a","username":"A","content":"old","created_at":"2026-11-25T10:00:00Z"}}`
	named := `{"cache_id":2,"data":{"owner_id":"a","channel_id":"Org:Room~1","username":"A","content":"new","created_at":"2026-11-25T10:00:00Z"}}`
	testenv.Do(t, b.client, "XADD", stream, "*", "cache_id", "1", "kind", "message", "payload", old)
	testenv.Do(t, b.client, "XADD", stream, "*", "cache_id", "2", "kind", "message", "payload", named)
	cfg := b.config("w1")
	cfg.DefaultChannel = "lobby"
	b.start(t, cfg)
	testenv.WaitFor(t, "rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 2 })
	got := map[int64]string{}
	rows, _ := b.pool.Query(context.Background(), "SELECT cache_id, channel_id FROM chat_messages")
	var id int64
	var ch string
	if _, err := pgx.ForEachRow(rows, []any{&id, &ch}, func() error { got[id] = ch; return nil }); err != nil {
		t.Fatal(err)
	}
	if got[1] != "lobby" || got[2] != "Org:Room~1" {
		t.Errorf("channels of the rows: %v, want 1 in lobby (the default), 2 in Org:Room~1", got)
	}
}

// TestFlushedLeaveTheIndexes: once a batch is written, its messages leave their timelines'
// backlog indexes (history then finds them in PostgreSQL), the public ones their channel's and
// the private ones both users'.
func TestFlushedLeaveTheIndexes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.enqueue(t, message.Public, 40)
	b.enqueue(t, message.Private, 40)
	pub, priv := b.keys.Stream(message.Public), b.keys.Stream(message.Private)
	indexes := []string{keyspace.BacklogIndex(pub, message.ChannelTimeline(message.DefaultChannel)), keyspace.BacklogIndex(priv, message.PrivateTimeline("r"))}
	for u := range 7 {
		indexes = append(indexes, keyspace.BacklogIndex(priv, message.PrivateTimeline(fmt.Sprintf("u%d", u))))
	}
	card := func() (n int64) {
		for _, ix := range indexes {
			c, _ := testenv.Do(t, b.client, "ZCARD", ix).AsInt64()
			n += c
		}
		return n
	}
	if n := card(); n != 40+40*2 {
		t.Fatalf("the indexes hold %d members before the flush, want 120", n)
	}
	for _, kind := range message.Kinds {
		cfg := b.config("w1")
		cfg.Kind, cfg.ForgetFunc = kind, b.scripts.ForgetPrivate
		b.start(t, cfg)
	}
	testenv.WaitFor(t, "the indexes to empty", 10*time.Second, func() bool { return card() == 0 })
	if total, _ := b.rows(t, "chat_messages"); total != 40 {
		t.Errorf("%d public rows, want 40", total)
	}
}

// TestFlushedEdits: two workers flush creates and their edits in whatever order they meet them;
// every row ends at its message's last edit, with its version and edit time; the edits' marks
// and index members are gone once they are in PostgreSQL; the metric counts the edits applied.
func TestFlushedEdits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	ids := b.enqueue(t, message.Public, 60)
	stream := b.keys.Stream(message.Public)
	want := map[int64]int64{} // id → last version
	for round := range 3 {
		for i, id := range ids {
			if i%(round+2) != 0 {
				continue
			}
			m := message.Message{OwnerID: fmt.Sprintf("u%d", i%7), ChannelID: message.DefaultChannel, Username: "U",
				Content: fmt.Sprintf("msg %d, edit %d", i, round), CreatedAt: "2026-11-25T10:00:00Z", EditedAt: "2026-11-25T10:01:00Z"}
			v, err := b.scripts.Edit(ctx, store.Edit{Kind: message.Public, CacheID: id, Message: m, Found: max(want[id], id)})
			if err != nil {
				t.Fatal(err)
			}
			want[id] = v
		}
	}
	if n, _ := testenv.Do(t, b.client, "HLEN", keyspace.Edits(stream)).AsInt64(); n != int64(len(want)) {
		t.Fatalf("the edits hash holds %d marks, want %d", n, len(want))
	}
	for _, w := range []string{"w1", "w2"} {
		cfg := b.config(w)
		cfg.BatchSize = 7 // many batches, met in either order by the two
		b.start(t, cfg)
	}
	ix := keyspace.BacklogIndex(stream, message.ChannelTimeline(message.DefaultChannel))
	testenv.WaitFor(t, "the marks and index to empty", 10*time.Second, func() bool {
		n, _ := testenv.Do(t, b.client, "HLEN", keyspace.Edits(stream)).AsInt64()
		c, _ := testenv.Do(t, b.client, "ZCARD", ix).AsInt64()
		return n == 0 && c == 0
	})
	rows, err := b.pool.Query(ctx, "SELECT cache_id, content, version, edited_at IS NOT NULL FROM chat_messages")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		var id, version int64
		var content string
		var edited bool
		if err := rows.Scan(&id, &content, &version, &edited); err != nil {
			t.Fatal(err)
		}
		n++
		v, ok := want[id]
		switch {
		case !ok && (version != 0 || edited):
			t.Errorf("row %d was never edited but has version %d", id, version)
		case ok && (version != v || !edited || !strings.HasSuffix(content, fmt.Sprintf("edit %d", lastRound(id, ids)))):
			t.Errorf("row %d: %q at version %d (edited %t), want version %d", id, content, version, edited, v)
		}
	}
	if n != len(ids) {
		t.Errorf("%d rows, want %d", n, len(ids))
	}
	// At least each message's last edit changed its row; an older edit met after a newer one
	// changes nothing.
	if got := testutil.ToFloat64(b.metricsCounter(t, "chatpipe_flush_edits_applied_total", "message")); got < float64(len(want)) {
		t.Errorf("edits applied: %v, want at least %d", got, len(want))
	}
}

// lastRound is the last of TestFlushedEdits' rounds that edited id.
func lastRound(id int64, ids []int64) int {
	i := slices.Index(ids, id)
	last := 0
	for round := range 3 {
		if i%(round+2) == 0 {
			last = round
		}
	}
	return last
}
