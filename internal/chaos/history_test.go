package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestHistoryWithBacklog runs the read side as a user meets it, with the binaries: RECENT_SIZE=50,
// one worker while clients send for 4 s, then stopped while they send 3 s more (a backlog of
// thousands), then 30 public and 9 private messages deleted. Full backward and forward scans of
// the public history and of the busiest users' private histories (limit=200) return exactly the
// accepted, undeleted messages with their content, once each: with the backlog waiting, while a
// restarted worker drains it, and after. A live-tail client connected before the first message,
// disconnected for a second and resumed with Last-Event-ID, gets every public message and every
// deletion exactly once.
func TestHistoryWithBacklog(t *testing.T) { runHistory(t, historyRun{}) }

// TestHistoryChannels is TestHistoryWithBacklog with the public messages spread over 200
// channels of several id shapes (a few busy, many quiet) and deleted through their channels:
// every channel's full scans, both ways, return exactly its accepted, undeleted messages once,
// with the backlog waiting, during the drain and after; each channel's ring holds its newest
// messages in order; PostgreSQL holds every message once in its channel; the firehose tail
// gets every message and deletion once.
func TestHistoryChannels(t *testing.T) { runHistory(t, historyRun{channels: 200}) }

// TestHistoryPartitionedCluster is TestHistoryChannels in the partitioned layout on a real
// local 3+3 cluster: a named channel lives in one partition.
func TestHistoryPartitionedCluster(t *testing.T) {
	testenv.Slow(t, "the cluster suites are slow")
	runHistory(t, historyRun{cluster: true, channels: 200})
}

// TestHistoryOnStandby is TestHistoryWithBacklog with ingest's DATABASE_URL on a streaming
// replica that applies the primary's WAL 12 s late, and the workers on the primary with
// FLUSH_PG_STANDBYS=1 and FLUSH_TAIL_RETENTION=2s: the stream keeps what the replica has not
// replayed yet. The scans also run after the drain, past the retention (the replica still
// behind), and once the replica replayed everything and the streams were trimmed. With
// FLUSH_PG_STANDBYS=0 the scans during and after the drain miss thousands of messages.
func TestHistoryOnStandby(t *testing.T) {
	testenv.Slow(t, "starts a replica")
	runHistory(t, historyRun{standbyDelay: 12 * time.Second})
}

type historyRun struct {
	cluster bool
	// channels, when set, spreads the public messages over this many channels.
	channels int
	// standbyDelay, when set, puts ingest's history on a replica this far behind.
	standbyDelay time.Duration
}

// runHistory is not parallel: its clients send as fast as ingest takes them, and beside the other
// suites that load made their timeouts fire.
func runHistory(t *testing.T, run historyRun) {
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	var valkeyEnv []string
	var single *testenv.Valkey
	if run.cluster {
		cl := testenv.StartCluster(t)
		valkeyEnv = []string{"VALKEY_MODE=cluster", "VALKEY_ADDR=" + strings.Join(strings.Split(cl.Addrs, ",")[:2], ","), "KEY_LAYOUT=partitioned", "KEY_PARTITIONS=16"}
	} else {
		single = testenv.StartValkey(t)
		valkeyEnv = []string{"VALKEY_ADDR=" + single.Addr}
	}
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	historyDSN, workerEnv := dsn, []string(nil)
	if run.standbyDelay > 0 {
		historyDSN = testenv.PostgresReplica(t, dsn, run.standbyDelay)
		workerEnv = []string{"FLUSH_PG_STANDBYS=1", "FLUSH_TAIL_RETENTION=2s"}
	}
	d := &deployment{dir: dir, valkey: valkeyEnv, dsn: dsn}
	in, base := d.ingest(t, "ingest", "RECENT_SIZE=50", "DATABASE_URL="+historyDSN)
	worker := func(batch int) *proc {
		return d.worker(t, "w1", append([]string{"RECENT_SIZE=50", fmt.Sprintf("FLUSH_BATCH_SIZE=%d", batch)}, workerEnv...)...)
	}
	w := worker(500)
	in.start(t)
	w.start(t)
	killOnCleanup(t, in, w)
	testenv.WaitReady(t, base+"/readyz", 30*time.Second)

	// The tail client, from before the first message on: the firehose of every channel.
	tailURL := base + "/v1/messages/stream"
	var channels *channelSet
	if run.channels > 0 {
		channels, tailURL = newChannelSet(run.channels), base+"/v1/channels/stream?all=true"
	}
	tailed := newTailClient(t, tailURL)
	defer tailed.stop()

	l := newLedger()
	c := &client{base: base, http: keepAlive(5 * time.Second), l: l, channels: channels}
	var next atomic.Int64
	sendFor := func(d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		var wg sync.WaitGroup
		for g := range 8 {
			rng := rand.New(rand.NewPCG(3, uint64(g+1)))
			wg.Go(func() {
				for ctx.Err() == nil {
					kind := "message"
					if rng.Float64() < 0.25 {
						kind = "private_message"
					}
					c.send(kind, fmt.Sprintf("u%d", rng.IntN(20)), fmt.Sprintf("t%d", next.Add(1)), 50)
				}
			})
		}
		wg.Wait()
	}
	sendFor(2 * time.Second)
	tailed.reconnectAfter(time.Second) // the tail client loses its connection for a second
	sendFor(2 * time.Second)
	w.stop()
	sendFor(3 * time.Second)
	if len(l.unknown) > 0 || len(l.rejected) > 0 {
		t.Fatalf("%d sends without a definite answer, %d rejected (%v): nothing failed here", len(l.unknown), len(l.rejected), l.rejected)
	}
	backlog := backlogLen(t, dsn, l)
	if backlog < 1000 {
		t.Fatalf("backlog of %d messages, want thousands", backlog)
	}

	// Deletions: 30 public, spread over PostgreSQL, the backlog and the ring; 9 private of the
	// three busiest users.
	rng := rand.New(rand.NewPCG(4, 5))
	pubIDs := sortedIDs(l.accepted["message"])
	deleted := map[string]map[int64]bool{"message": {}, "private_message": {}}
	for len(deleted["message"]) < 30 {
		id := pubIDs[rng.IntN(len(pubIDs))]
		if len(deleted["message"]) < 3 {
			id = pubIDs[len(pubIDs)-1-len(deleted["message"])] // in the ring
		}
		if !deleted["message"][id] {
			path := "/v1/messages/"
			if channels != nil {
				path = "/v1/channels/" + l.channel[l.accepted["message"][id]] + "/messages/"
			}
			deleteOK(t, base, path, id)
			deleted["message"][id] = true
		}
	}
	busiest := l.privateUsers()[:3]
	for _, u := range busiest {
		for n := 0; n < 3; {
			id := u.ids[rng.IntN(len(u.ids))]
			if !deleted["private_message"][id] {
				deleteOK(t, base, "/v1/private-messages/", id)
				deleted["private_message"][id] = true
				n++
			}
		}
	}
	t.Logf("%d public and %d private messages accepted; backlog of %d when the worker stopped",
		len(l.accepted["message"]), len(l.accepted["private_message"]), backlog)

	hc := keepAlive(10 * time.Second)
	byChannel := l.byChannel()
	scanAll := func(stage string) {
		for _, backward := range []bool{true, false} {
			what := fmt.Sprintf("%s, public, backward %t", stage, backward)
			if channels == nil {
				got := testenv.ScanHistory(t, hc, base, "/v1/messages/history", backward, 200)
				checkHistory(t, what, got, l, "message", deleted["message"], nil)
			}
			for _, ch := range channels.list() {
				got := testenv.ScanHistory(t, hc, base, "/v1/channels/"+ch+"/messages/history", backward, 200)
				// A quiet channel may have had no message: its history must then be empty (a
				// nil list would mean every channel's messages).
				checkHistory(t, what+", channel "+ch, got, l, "message", deleted["message"], append([]int64{}, byChannel[ch]...))
				for _, m := range got {
					if m.Data.ChannelID != ch {
						t.Fatalf("%s, channel %s: message %d says channel %q", what, ch, m.CacheID, m.Data.ChannelID)
					}
				}
			}
			for _, u := range busiest {
				got := testenv.ScanHistory(t, hc, base, "/v1/users/"+u.name+"/private-messages/history", backward, 200)
				checkHistory(t, what+", user "+u.name, got, l, "private_message", deleted["private_message"], u.ids)
			}
		}
	}
	scanAll("backlog waiting")
	w = worker(10) // small batches: the drain takes a while, and the scans run through it
	w.start(t)
	killOnCleanup(t, w)
	duringDrain := 0
	for backlogLen(t, dsn, l) > len(deleted["message"])+len(deleted["private_message"]) {
		scanAll("while draining")
		duringDrain++
	}
	if duringDrain == 0 {
		t.Error("the worker drained the backlog before one full scan: no scan ran during the drain")
	}
	scanAll("drained")
	t.Logf("%d full scans (public both ways, 3 private histories both ways) ran while the worker drained", duringDrain)
	if run.standbyDelay > 0 {
		// Past FLUSH_TAIL_RETENTION the acked entries would be trimmed, but the replica has not
		// replayed their rows yet: the stream must keep them.
		time.Sleep(3 * time.Second)
		onReplica, onPrimary := rowsOn(t, historyDSN), rowsOn(t, dsn)
		scanAll("drained, past the retention, replica behind")
		if onReplica >= onPrimary {
			t.Fatalf("the replica held %d rows, as many as the primary, before the last scan: the stage tested nothing", onReplica)
		}
		t.Logf("before the last scan the replica held %d of the primary's %d rows", onReplica, onPrimary)
		testenv.WaitFor(t, "the replica to replay every row", 60*time.Second, func() bool { return rowsOn(t, historyDSN) == rowsOn(t, dsn) })
		c := single.Client(t)
		testenv.WaitFor(t, "the streams to be trimmed", 60*time.Second, func() bool {
			pub, _ := testenv.Do(t, c, "XLEN", "chatpipe:flush:message").AsInt64()
			priv, _ := testenv.Do(t, c, "XLEN", "chatpipe:flush:private_message").AsInt64()
			return pub == 0 && priv == 0
		})
		scanAll("trimmed, replica caught up")
	}

	if channels != nil {
		checkChannelRings(t, hc, base, byChannel, deleted["message"], 50)
		checkChannelRows(t, dsn, l, deleted["message"])
	}

	// The tail: every public message and every public deletion, once.
	wantEvents := len(l.accepted["message"]) + len(deleted["message"])
	testenv.WaitFor(t, "the tail to deliver every event", 30*time.Second, func() bool { return tailed.count() >= wantEvents })
	tailed.check(t, l, deleted["message"])
	if strings.Contains(in.logs.String(), "panic") || strings.Contains(w.logs.String(), "CROSSSLOT") {
		t.Errorf("ingest or worker logs hold a panic or CROSSSLOT:\n%s", tail(in.logs.String()+w.logs.String(), 20))
	}
}

// checkChannelRings: each channel's ring holds its newest size accepted messages, minus those
// deleted, oldest first.
func checkChannelRings(t *testing.T, hc *http.Client, base string, byChannel map[string][]int64, deleted map[int64]bool, size int) {
	t.Helper()
	for ch, ids := range byChannel {
		res, err := hc.Get(base + "/v1/channels/" + ch + "/messages/recent")
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Messages []testenv.HistoryMessage `json:"messages"`
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		drain(res)
		if err != nil {
			t.Fatalf("channel %s's ring: %v", ch, err)
		}
		var got, want []int64
		for _, m := range body.Messages {
			got = append(got, m.CacheID)
		}
		for _, id := range ids[max(0, len(ids)-size):] {
			if !deleted[id] {
				want = append(want, id)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("channel %s's ring: %v, want %v", ch, got, want)
		}
	}
}

// checkChannelRows: PostgreSQL holds every accepted, undeleted public message once, in its
// channel, and no deleted one.
func checkChannelRows(t *testing.T, dsn string, l *ledger, deleted map[int64]bool) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), "SELECT cache_id, channel_id FROM chat_messages")
	stored := map[int64]string{}
	var id int64
	var ch string
	if _, err := pgx.ForEachRow(rows, []any{&id, &ch}, func() error { stored[id] = ch; return nil }); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for id, token := range l.accepted["message"] {
		got, ok := stored[id]
		if deleted[id] == ok || (ok && got != l.channel[token]) {
			bad++
		}
	}
	if bad > 0 || len(stored) != len(l.accepted["message"])-len(deleted) {
		t.Errorf("%d public messages not in PostgreSQL once in their channel; %d rows for %d accepted and %d deleted", bad, len(stored), len(l.accepted["message"]), len(deleted))
	}
}

// rowsOn counts the message rows of both tables on the server of dsn.
func rowsOn(t *testing.T, dsn string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT (SELECT count(*) FROM chat_messages) + (SELECT count(*) FROM private_messages)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func sortedIDs(m map[int64]string) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// backlogLen is how many accepted messages have no row yet.
func backlogLen(t *testing.T, dsn string, l *ledger) int {
	t.Helper()
	return len(l.accepted["message"]) + len(l.accepted["private_message"]) - rowsOn(t, dsn)
}

func deleteOK(t *testing.T, base, path string, id int64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("%s%s%d", base, path, id), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	drain(res)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE %s%d: %d", path, id, res.StatusCode)
	}
}

// checkHistory compares a scan with the ledger: the accepted messages of kind (only, when set,
// the ids of one user), minus the deleted, each once, with its content and sender.
func checkHistory(t *testing.T, what string, got []testenv.HistoryMessage, l *ledger, kind string, deleted map[int64]bool, only []int64) {
	t.Helper()
	var want []int64
	if only != nil {
		for _, id := range only {
			if !deleted[id] {
				want = append(want, id)
			}
		}
		slices.Sort(want)
	} else {
		for _, id := range sortedIDs(l.accepted[kind]) {
			if !deleted[id] {
				want = append(want, id)
			}
		}
	}
	ids := make([]int64, len(got))
	bad := 0
	for i, m := range got {
		ids[i] = m.CacheID
		token := l.accepted[kind][m.CacheID]
		if m.Data.Content != "chaos "+token || m.Data.OwnerID != l.owner[token] {
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d messages differ from what was sent", what, bad)
	}
	if !slices.Equal(ids, want) {
		missing, extra := 0, 0
		for _, id := range want {
			if _, ok := slices.BinarySearch(ids, id); !ok {
				missing++
			}
		}
		extra = len(ids) - (len(want) - missing)
		t.Errorf("%s: %d messages, want %d: %d missing, %d extra or repeated", what, len(ids), len(want), missing, extra)
	}
}

// tailClient follows a live tail in the background, reconnecting with Last-Event-ID whenever
// its stream ends, and records every event.
type tailClient struct {
	url  string
	http *http.Client
	mu   sync.Mutex
	evs  []testenv.SSEEvent
	last string
	cur  *testenv.SSE
	// pause, when set, is how long to stay away before the next reconnection.
	pause   time.Duration
	done    chan struct{}
	stopped atomic.Bool
	resumes int
}

func newTailClient(t *testing.T, url string) *tailClient {
	tc := &tailClient{url: url, http: &http.Client{}, done: make(chan struct{})}
	s, code := testenv.OpenSSE(t, tc.http, url, "")
	if code != http.StatusOK {
		t.Fatalf("tail: %d", code)
	}
	tc.cur = s
	go tc.loop(t)
	return tc
}

func (tc *tailClient) loop(t *testing.T) {
	defer close(tc.done)
	for !tc.stopped.Load() {
		tc.mu.Lock()
		cur := tc.cur
		tc.mu.Unlock()
		for {
			ev, ok := cur.Next()
			if !ok {
				break
			}
			tc.mu.Lock()
			tc.evs = append(tc.evs, ev)
			tc.last = ev.ID
			tc.mu.Unlock()
		}
		if tc.stopped.Load() {
			return
		}
		tc.mu.Lock()
		pause, last := tc.pause, tc.last
		tc.pause = 0
		tc.resumes++
		tc.mu.Unlock()
		time.Sleep(pause)
		s, code := testenv.OpenSSE(t, tc.http, tc.url, last)
		if code != http.StatusOK {
			t.Errorf("tail: resuming after %q: %d", last, code)
			return
		}
		tc.mu.Lock()
		tc.cur = s
		tc.mu.Unlock()
	}
}

// reconnectAfter drops the connection and resumes after d.
func (tc *tailClient) reconnectAfter(d time.Duration) {
	tc.mu.Lock()
	tc.pause = d
	cur := tc.cur
	tc.mu.Unlock()
	cur.Close()
}

func (tc *tailClient) count() int {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return len(tc.evs)
}

func (tc *tailClient) stop() {
	tc.stopped.Store(true)
	tc.mu.Lock()
	cur := tc.cur
	tc.mu.Unlock()
	cur.Close()
	<-tc.done
}

// check compares the events with the ledger: every accepted public message and every deletion
// exactly once, with the message's content.
func (tc *tailClient) check(t *testing.T, l *ledger, deleted map[int64]bool) {
	t.Helper()
	tc.mu.Lock()
	defer tc.mu.Unlock()
	msgs, dels := map[int64]int{}, map[int64]int{}
	bad := 0
	for _, ev := range tc.evs {
		var m testenv.HistoryMessage
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("event %+v: %v", ev, err)
		}
		switch ev.Type {
		case "message":
			msgs[m.CacheID]++
			if token := l.accepted["message"][m.CacheID]; m.Data.Content != "chaos "+token {
				bad++
			}
		case "delete":
			dels[m.CacheID]++
		}
	}
	missing, twice := 0, 0
	for id := range l.accepted["message"] {
		switch msgs[id] {
		case 0:
			missing++
		case 1:
		default:
			twice++
		}
	}
	for id := range deleted {
		if dels[id] != 1 {
			t.Errorf("tail: deletion of %d delivered %d times", id, dels[id])
		}
	}
	if missing > 0 || twice > 0 || bad > 0 || len(msgs) != len(l.accepted["message"]) || tc.resumes < 1 {
		t.Errorf("tail: %d messages of %d accepted; %d missing, %d more than once, %d with other content, %d not accepted; %d resumes",
			len(msgs), len(l.accepted["message"]), missing, twice, bad, len(msgs)-(len(l.accepted["message"])-missing), tc.resumes)
	}
	t.Logf("tail: %d messages and %d deletions received over %d connections", len(msgs), len(dels), tc.resumes+1)
}
