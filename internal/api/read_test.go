package api_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/flush"
	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/tail"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// readBundle is ingest's API over a real Valkey with history on a real PostgreSQL (dsn "": none)
// and the live tail running.
type readBundle struct {
	*testBundle
	scripts *store.Store
	layout  keyspace.Layout
	store   *pg.Store
	dsn     string
}

func setupRead(t *testing.T, dsn string, recentSize, tailMax int, valkeyArgs ...string) *readBundle {
	t.Helper()
	keys, _ := keyspace.New("")
	return setupReadLayout(t, keys, dsn, recentSize, tailMax, valkeyArgs...)
}

// setupReadLayout is setupRead in layout (on one server).
func setupReadLayout(t *testing.T, keys keyspace.Layout, dsn string, recentSize, tailMax int, valkeyArgs ...string) *readBundle {
	t.Helper()
	srv := testenv.StartValkey(t, valkeyArgs...)
	c := srv.Client(t)
	scripts, err := store.Open(c, store.Config{Layout: keys, RecentSize: recentSize, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rb := &readBundle{scripts: scripts, layout: keys, dsn: dsn}
	var db *pg.History
	if dsn != "" {
		pool, err := pg.Connect(context.Background(), dsn, 8)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if dsn != badDSN {
			if _, err := pg.Migrate(context.Background(), pool, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
		}
		db, rb.store = pg.NewHistory(pool), pg.New(pool)
	}
	reg := prometheus.NewRegistry()
	hist, err := history.New(history.Config{Valkey: c, Layout: keys, DB: db, Registerer: reg, Timeout: 3 * time.Second, ReactionsTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tails, err := tail.New(tail.Config{Valkey: c, Layout: keys, MaxSubscribers: tailMax, Registerer: reg, Block: 200 * time.Millisecond, Buffer: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tails.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	a, err := api.New(api.Config{Store: scripts, Registerer: reg, RecentSize: recentSize, History: hist, Tail: tails, TailHeartbeat: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	single, _ := keys.(keyspace.Keys)
	rb.testBundle = &testBundle{url: hs.URL, server: srv, client: c, keys: single, reg: reg}
	return rb
}

// badDSN is a PostgreSQL that is not there.
const badDSN = "postgres://nobody@127.0.0.1:1/none?connect_timeout=1"

// TestHistoryBadInput: every malformed cursor or limit gets 400 naming the field, on both
// history endpoints, before anything is read.
func TestHistoryBadInput(t *testing.T) {
	t.Parallel()
	b := setupRead(t, "", 50, 10)
	cases := []struct{ query, field string }{
		{"before=abc", "before"},
		{"before=-1", "before"},
		{"before=0", "before"},
		{"before=1.5", "before"},
		{"before=", "before"},
		{"before=+5", "before"},
		{"before=05", "before"},
		{"before=99999999999999999999", "before"},
		{"before=1&before=2", "before"},
		{"after=-1", "after"},
		{"after=x", "after"},
		{"after=1&before=2", "after"},
		{"limit=0", "limit"},
		{"limit=100000", "limit"},
		{"limit=201", "limit"},
		{"limit=1.5", "limit"},
		{"limit=-3", "limit"},
		{"limit=", "limit"},
		{"limit=1&limit=2", "limit"},
		{"before=%00", "before"},
		{"before=" + strings.Repeat("9", 5000), "before"},
	}
	for _, path := range []string{"/v1/messages/history", "/v1/users/alice/private-messages/history"} {
		for _, c := range cases {
			r := b.do(t, http.MethodGet, path+"?"+c.query, "", "")
			if r.status != http.StatusBadRequest || r.body["field"] != c.field {
				t.Errorf("%s?%s: %d %s, want 400 naming %s", path, c.query, r.status, r.raw, c.field)
			}
		}
	}
	for _, user := range []string{"a%20b", "%00", strings.Repeat("u", 129)} {
		r := b.do(t, http.MethodGet, "/v1/users/"+user+"/private-messages/history", "", "")
		if r.status != http.StatusBadRequest {
			t.Errorf("user %.20q: %d %s, want 400", user, r.status, r.raw)
		}
	}
	// Valid queries without DATABASE_URL: 503 history_unavailable, and the rest works.
	r := b.do(t, http.MethodGet, "/v1/messages/history?limit=10", "", "")
	if r.status != http.StatusServiceUnavailable || r.body["error"] != "history_unavailable" || !strings.Contains(r.raw, "DATABASE_URL") {
		t.Errorf("no database: %d %s, want 503 history_unavailable naming DATABASE_URL", r.status, r.raw)
	}
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"alice","content":"still here"}`), http.StatusAccepted)
	for _, path := range []string{"/v1/private-messages/abc", "/v1/private-messages/0", "/v1/private-messages/-4", "/v1/private-messages/1.0"} {
		if r := b.do(t, http.MethodDelete, path, "", ""); r.status != http.StatusBadRequest {
			t.Errorf("DELETE %s: %d, want 400", path, r.status)
		}
	}
	if r := b.do(t, http.MethodDelete, "/v1/private-messages/12345", "", ""); r.status != http.StatusNotFound {
		t.Errorf("DELETE of an id never issued: %d %s, want 404", r.status, r.raw)
	}
}

// TestHistoryPostgresDown: history answers 503 with Retry-After while PostgreSQL is unreachable;
// the rest of ingest is unaffected.
func TestHistoryPostgresDown(t *testing.T) {
	t.Parallel()
	b := setupRead(t, badDSN, 50, 10)
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"alice","content":"one"}`), http.StatusAccepted)
	r := b.do(t, http.MethodGet, "/v1/messages/history", "", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "history_unavailable" {
		t.Errorf("postgres down: %d %q %s, want 503 history_unavailable with Retry-After", r.status, r.header.Get("Retry-After"), r.raw)
	}
	wantStatus(t, b.do(t, http.MethodGet, "/v1/messages/recent", "", ""), http.StatusOK)
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
}

// sent is what the test sent and was told: cache id → content, owner, recipient.
type sent struct {
	content, owner, recipient string
}

func (b *readBundle) send(t *testing.T, n int, private bool, got map[int64]sent) {
	t.Helper()
	users := []string{"alice", "bob", "carol"}
	for i := range n {
		owner, recipient := users[i%3], users[(i+1)%3]
		if i%7 == 0 {
			recipient = owner // a self-DM now and then
		}
		content := fmt.Sprintf("m%d-%d", len(got), i)
		path, body := "/v1/messages", fmt.Sprintf(`{"owner_id":%q,"content":%q}`, owner, content)
		if private {
			path, body = "/v1/private-messages", fmt.Sprintf(`{"owner_id":%q,"recipient_id":%q,"content":%q}`, owner, recipient, content)
		} else {
			recipient = ""
		}
		r := b.post(t, path, body)
		wantStatus(t, r, http.StatusAccepted)
		got[int64(r.body["cache_id"].(float64))] = sent{content, owner, recipient}
	}
}

// flushAll runs real flush consumers of both streams until PostgreSQL holds want rows.
func (b *readBundle) flushAll(t *testing.T, want int) {
	t.Helper()
	b.flushUntil(t, "rows in postgres", "SELECT (SELECT count(*) FROM chat_messages) + (SELECT count(*) FROM private_messages)", want)
}

// flushUntil runs a flush worker on every stream until query, a count, answers want.
func (b *readBundle) flushUntil(t *testing.T, what, query string, want int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streams := b.layout.FlushStreams()
	done := make(chan struct{}, len(streams))
	for _, fs := range streams {
		co, err := flush.New(b.client, flush.Config{Flush: fs, Consumer: "w", Sink: b.store,
			FlushInterval: 20 * time.Millisecond, TailRetention: time.Minute, ForgetFunc: b.scripts.ForgetPrivate, RepairFunc: b.scripts.RepairRings})
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = co.Run(ctx); done <- struct{}{} }()
	}
	pool, _ := pg.Connect(ctx, b.dsn, 1)
	defer pool.Close()
	testenv.WaitFor(t, what, 20*time.Second, func() bool {
		var n int
		_ = pool.QueryRow(ctx, query).Scan(&n)
		return n == want
	})
	cancel()
	for range streams {
		<-done
	}
}

// wantHistory compares a scan with what was sent and not deleted, filtered by keep.
func wantHistory(t *testing.T, what string, got []testenv.HistoryMessage, sentMsgs map[int64]sent, deleted map[int64]bool, keep func(sent) bool) {
	t.Helper()
	var want []int64
	for id, s := range sentMsgs {
		if !deleted[id] && keep(s) {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	ids := make([]int64, len(got))
	for i, m := range got {
		ids[i] = m.CacheID
		s := sentMsgs[m.CacheID]
		if m.Data.Content != s.content || m.Data.OwnerID != s.owner || m.Data.RecipientID != s.recipient {
			t.Errorf("%s: message %d is %+v, sent %+v", what, m.CacheID, m.Data, s)
		}
	}
	if !slices.Equal(ids, want) {
		var missing, extra []int64
		for _, id := range want {
			if !slices.Contains(ids, id) {
				missing = append(missing, id)
			}
		}
		for _, id := range ids {
			if !slices.Contains(want, id) {
				extra = append(extra, id)
			}
		}
		t.Errorf("%s: missing %v, extra or repeated %v", what, missing, extra)
		t.Errorf("%s: %d messages, want %d (first got %v, want %v)", what, len(ids), len(want), ids[:min(5, len(ids))], want[:min(5, len(want))])
	}
}

// TestHistoryAcrossSources: messages in PostgreSQL, in the backlog and in the ring, some of
// each deleted, page the same way: full scans both ways, at several page sizes, return every
// undeleted message once, with its content.
func TestHistoryAcrossSources(t *testing.T) {
	t.Parallel()
	b := setupRead(t, testenv.Postgres(t), 20, 10)
	pub, priv := map[int64]sent{}, map[int64]sent{}
	b.send(t, 90, false, pub)
	b.send(t, 40, true, priv)
	b.flushAll(t, 130)
	b.send(t, 60, false, pub) // the backlog: no worker runs now
	b.send(t, 20, true, priv)
	deleted, deletedPriv := map[int64]bool{}, map[int64]bool{} // ids of each kind
	var pubIDs, privIDs []int64
	for id := range pub {
		pubIDs = append(pubIDs, id)
	}
	for id := range priv {
		privIDs = append(privIDs, id)
	}
	slices.Sort(pubIDs)
	slices.Sort(privIDs)
	// In PostgreSQL, in the backlog below the ring, in the ring.
	for _, id := range []int64{pubIDs[3], pubIDs[50], pubIDs[100], pubIDs[140], pubIDs[149]} {
		wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/messages/%d", id), "", ""), http.StatusNoContent)
		deleted[id] = true
	}
	for _, id := range []int64{privIDs[2], privIDs[45], privIDs[59]} {
		wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/private-messages/%d", id), "", ""), http.StatusNoContent)
		deletedPriv[id] = true
	}
	check := func(stage string) {
		for _, limit := range []int{1, 7, 50, 200} {
			for _, backward := range []bool{true, false} {
				what := fmt.Sprintf("%s, public, limit %d, backward %t", stage, limit, backward)
				wantHistory(t, what, testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/messages/history", backward, limit), pub, deleted, func(sent) bool { return true })
				for _, u := range []string{"alice", "bob", "carol"} {
					got := testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/users/"+u+"/private-messages/history", backward, limit)
					wantHistory(t, what+", "+u, got, priv, deletedPriv, func(s sent) bool { return s.owner == u || s.recipient == u })
				}
			}
		}
	}
	check("backlog waiting")
	b.flushAll(t, 130+80-len(deleted)-len(deletedPriv))
	check("flushed")
	// Rings hold no deleted message either: ingest or the worker cleared them.
	for _, u := range []string{"alice", "bob", "carol"} {
		r := b.do(t, http.MethodGet, "/v1/users/"+u+"/private-messages/recent", "", "")
		for id := range deletedPriv {
			if strings.Contains(r.raw, fmt.Sprintf(`"cache_id":%d,`, id)) {
				t.Errorf("%s's ring still holds deleted message %d", u, id)
			}
		}
	}
}

// TestTailResume: a tail client gets every message and deletion once, in order; disconnected,
// it resumes with Last-Event-ID (or ?after=) exactly after its last event; a bad id is 400, an
// id whose successors were trimmed is 410, past INGEST_TAIL_MAX is 503.
func TestTailResume(t *testing.T) {
	t.Parallel()
	b := setupRead(t, "", 50, 3)
	url := b.url + "/v1/messages/stream"
	s, _ := testenv.OpenSSE(t, http.DefaultClient, url, "")
	pub := map[int64]sent{}
	b.send(t, 5, false, pub)
	var last string
	var got []int64
	for range 5 {
		ev, ok := s.Next()
		if !ok || ev.Type != "message" {
			t.Fatalf("event %+v, %t", ev, ok)
		}
		var m testenv.HistoryMessage
		_ = json.Unmarshal([]byte(ev.Data), &m)
		got = append(got, m.CacheID)
		last = ev.ID
	}
	s.Close()
	b.send(t, 4, false, pub)
	wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/messages/%d", got[0]), "", ""), http.StatusNoContent)
	for i, how := range []string{"Last-Event-ID", "after"} {
		var r *testenv.SSE
		if how == "after" {
			r, _ = testenv.OpenSSE(t, http.DefaultClient, url+"?after="+last, "")
		} else {
			r, _ = testenv.OpenSSE(t, http.DefaultClient, url, last)
		}
		ids, msgs := nextEvents(t, r, 5)
		want := []int64{6, 7, 8, 9, -1}
		if !slices.Equal(ids, want) {
			t.Errorf("resume %d by %s: %v, want %v", i, how, ids, want)
		}
		for j, m := range msgs { // every message, and the deletion, name the default channel
			if ch := cmp.Or(m.Data.ChannelID, m.ChannelID); ch != message.DefaultChannel {
				t.Errorf("event %d (%d) names the channel %q, want %q", j, ids[j], ch, message.DefaultChannel)
			}
		}
		r.Close()
	}
	for _, bad := range []string{"garbage", "AQ", strings.Repeat("A", 5000)} {
		if _, code := testenv.OpenSSE(t, http.DefaultClient, url, bad); code != http.StatusBadRequest {
			t.Errorf("Last-Event-ID %.20q: %d, want 400", bad, code)
		}
	}
	// Trim everything: the entries after the cursor are gone.
	testenv.Do(t, b.client, "XTRIM", b.keys.Stream(message.Public), "MAXLEN", "0")
	if _, code := testenv.OpenSSE(t, http.DefaultClient, url, last); code != http.StatusGone {
		t.Errorf("trimmed cursor: %d, want 410", code)
	}
	// INGEST_TAIL_MAX = 3, once the streams closed above have left (the server sees a client go
	// on its next write or read).
	testenv.WaitFor(t, "the closed streams to leave", 10*time.Second, func() bool { return b.gauge(t, "chatpipe_tail_subscribers") == 0 })
	var open []*testenv.SSE
	for range 3 {
		s, code := testenv.OpenSSE(t, http.DefaultClient, url, "")
		if code != http.StatusOK {
			t.Fatalf("subscriber %d: %d", len(open), code)
		}
		open = append(open, s)
	}
	r := b.do(t, http.MethodGet, "/v1/messages/stream", "", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("past the subscriber cap: %d %s, want 503 with Retry-After", r.status, r.raw)
	}
	// An EventSource (Accept: text/event-stream) would give up on a 503: it gets a stream that
	// tells it when to come back and why, and ends, with no id: that would move its cursor.
	for _, accept := range []string{"text/event-stream", "text/html, Text/Event-Stream;q=0.9"} {
		wantRefusal(t, url, accept, last, 5000, "INGEST_TAIL_MAX")
	}
	for _, s := range open {
		s.Close()
	}
}

// wantRefusal opens url as an EventSource does and wants the refusal stream: 200, a retry:
// field of at least minRetry ms, one `event: error` whose detail names what, and the end.
func wantRefusal(t *testing.T, url, accept, lastID string, minRetry int, what string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body) // the stream must end by itself
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("refusal for Accept %q: %d %q %s, want 200 text/event-stream", accept, res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	var retry int
	var ev, data string
	for _, line := range strings.Split(strings.TrimRight(string(body), "\n"), "\n") {
		field, value, _ := strings.Cut(line, ": ")
		switch field {
		case "retry":
			retry, _ = strconv.Atoi(value)
		case "event":
			ev = value
		case "data":
			data = value
		case "id":
			t.Errorf("refusal carries an id: line %q: it would move the client's cursor", line)
		}
	}
	var e struct {
		Error        string `json:"error"`
		Detail       string `json:"detail"`
		RetryAfterMS int    `json:"retry_after_ms"`
	}
	if err := json.Unmarshal([]byte(data), &e); err != nil {
		t.Fatalf("refusal data %q: %v", data, err)
	}
	if retry < minRetry || retry > 2*minRetry || ev != "error" || e.Error != "unavailable" || !strings.Contains(e.Detail, what) || e.RetryAfterMS == 0 {
		t.Errorf("refusal %q: retry %d (want %d..%d), event %q, data %+v; want error unavailable naming %s", body, retry, minRetry, 2*minRetry, ev, e, what)
	}
}

// TestTailPrivate: a user's private tail carries the messages the user sent or received, and
// their deletions, and nobody else's.
func TestTailPrivate(t *testing.T) {
	t.Parallel()
	b := setupRead(t, "", 50, 10)
	s, code := testenv.OpenSSE(t, http.DefaultClient, b.url+"/v1/users/carol/private-messages/stream", "")
	if code != http.StatusOK {
		t.Fatalf("open: %d", code)
	}
	defer s.Close()
	priv := map[int64]sent{}
	b.send(t, 9, true, priv) // alice→bob, bob→carol, carol→alice, …, a self-DM every 7th
	var want []int64
	for id, m := range priv {
		if m.owner == "carol" || m.recipient == "carol" {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/private-messages/%d", want[0]), "", ""), http.StatusNoContent)
	got, msgs := nextEvents(t, s, len(want)+1)
	for i, m := range msgs {
		if got[i] > 0 && m.Data.OwnerID != "carol" && m.Data.RecipientID != "carol" {
			t.Errorf("carol got %+v", m)
		}
	}
	if !slices.Equal(got, append(want, -want[0])) {
		t.Errorf("carol's tail: %v, want %v and the deletion of the first", got, want)
	}
}

// nextEvents reads n events and returns their ids (eventID) and messages; the stream ending
// first fails the test.
func nextEvents(t *testing.T, s *testenv.SSE, n int) ([]int64, []testenv.HistoryMessage) {
	t.Helper()
	ids := make([]int64, 0, n)
	msgs := make([]testenv.HistoryMessage, 0, n)
	for range n {
		ev, ok := s.Next()
		if !ok {
			t.Fatalf("the stream ended after %d of %d events", len(ids), n)
		}
		id, m := eventID(t, ev)
		ids, msgs = append(ids, id), append(msgs, m)
	}
	return ids, msgs
}

// eventID is the cache id of a tail event, negative for a deletion.
func eventID(t *testing.T, ev testenv.SSEEvent) (int64, testenv.HistoryMessage) {
	t.Helper()
	var m testenv.HistoryMessage
	if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
		t.Fatalf("event %+v: %v", ev, err)
	}
	if ev.Type == "delete" {
		return -m.CacheID, m
	}
	return m.CacheID, m
}

// gauge sums the series of a gauge in the bundle's registry.
func (b *testBundle) gauge(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// TestTailRefusedWhileValkeyDown: a subscriber that comes while Valkey is down (and nobody
// else is subscribed, so its position must be read): curl gets 503 with Retry-After, an
// EventSource a stream that makes it retry; once Valkey is back it gets in.
func TestTailRefusedWhileValkeyDown(t *testing.T) {
	t.Parallel()
	b := setupRead(t, "", 50, 10, "--appendonly", "yes", "--appendfsync", "always")
	url := b.url + "/v1/messages/stream"
	s, code := testenv.OpenSSE(t, http.DefaultClient, url, "")
	if code != http.StatusOK {
		t.Fatalf("open: %d", code)
	}
	s.Close()
	testenv.WaitFor(t, "the closed stream to leave", 10*time.Second, func() bool { return b.gauge(t, "chatpipe_tail_subscribers") == 0 })
	// The reader parks once its XREAD (Block: 200ms) returns; a subscriber that comes before
	// that is let in without reading Valkey, and waits for events.
	time.Sleep(time.Second)
	b.server.Stop()
	r := b.do(t, http.MethodGet, "/v1/messages/stream", "", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("tail with Valkey down: %d %s, want 503 with Retry-After", r.status, r.raw)
	}
	wantRefusal(t, url, "text/event-stream", "", 1000, "unreachable")
	b.server.Restart()
	testenv.WaitFor(t, "the tail to take subscribers again", 10*time.Second, func() bool {
		s, code := testenv.OpenSSE(t, http.DefaultClient, url, "")
		if s != nil {
			s.Close()
		}
		return code == http.StatusOK
	})
}

// TestTailSurvivesRestart: a subscriber's stream goes on across a Valkey restart (from its AOF):
// the reader retries from the entry it had reached, and the messages after the restart arrive.
func TestTailSurvivesRestart(t *testing.T) {
	t.Parallel()
	b := setupRead(t, "", 50, 10, "--appendonly", "yes", "--appendfsync", "always")
	s, code := testenv.OpenSSE(t, http.DefaultClient, b.url+"/v1/messages/stream", "")
	if code != http.StatusOK {
		t.Fatalf("open: %d", code)
	}
	defer s.Close()
	pub := map[int64]sent{}
	b.send(t, 3, false, pub)
	b.server.Stop()
	time.Sleep(300 * time.Millisecond)
	b.server.Restart()
	testenv.WaitFor(t, "ingest to accept again", 10*time.Second, func() bool {
		return b.post(t, "/v1/messages", `{"owner_id":"alice","content":"after"}`).status == http.StatusAccepted
	})
	got, _ := nextEvents(t, s, 4)
	if !slices.Equal(got, []int64{1, 2, 3, 4}) {
		t.Errorf("events %v, want 1 2 3 4 (the last sent after the restart)", got)
	}
}
