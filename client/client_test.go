package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/auth"
	"github.com/chatpipe/chatpipe/internal/flush"
	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/tail"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// ingest is a real ingest, in process, on a real Valkey and PostgreSQL.
type ingest struct {
	url    string
	hs     *httptest.Server
	valkey *testenv.Valkey
	keys   keyspace.Keys
	flush  func(t *testing.T) // runs the workers until the streams are flushed and trimmed
}

// startIngest starts an ingest; tokens, when given, is its INGEST_AUTH_TOKENS.
func startIngest(t *testing.T, tokens ...string) *ingest {
	t.Helper()
	var keyring *auth.Keyring
	if len(tokens) > 0 {
		set, err := auth.Parse(tokens[0])
		if err != nil {
			t.Fatal(err)
		}
		keyring = auth.NewKeyring(set)
	}
	v := testenv.StartValkey(t)
	c := v.Client(t)
	keys, _ := keyspace.New("")
	scripts, err := store.Open(c, store.Config{Layout: keys, RecentSize: 50, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	pool := testenv.MigratedPool(t, testenv.Postgres(t), 8)
	reg := prometheus.NewRegistry()
	hist, err := history.New(history.Config{Valkey: c, Layout: keys, DB: pg.NewHistory(pool), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	tails, err := tail.New(tail.Config{Valkey: c, Layout: keys, Registerer: reg, Block: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = tails.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	a, err := api.New(api.Config{Store: scripts, Registerer: reg, RecentSize: 50, History: hist, Tail: tails, TailHeartbeat: 200 * time.Millisecond, Tokens: keyring})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	in := &ingest{url: hs.URL, hs: hs, valkey: v, keys: keys}
	in.flush = func(t *testing.T) {
		t.Helper()
		fctx, stop := context.WithCancel(context.Background())
		defer stop()
		var running []chan struct{}
		for _, fs := range keys.FlushStreams() {
			co, err := flush.New(c, flush.Config{Flush: fs, Consumer: "w", Sink: pg.New(pool), FlushInterval: 20 * time.Millisecond,
				TailRetention: time.Millisecond, ForgetFunc: scripts.ForgetPrivate, RepairFunc: scripts.RepairRings})
			if err != nil {
				t.Fatal(err)
			}
			d := make(chan struct{})
			running = append(running, d)
			go func() { _ = co.Run(fctx); close(d) }()
		}
		testenv.WaitFor(t, "the streams flushed and trimmed", 20*time.Second, func() bool {
			n, _ := testenv.Do(t, c, "XLEN", keys.Stream(0)).AsInt64()
			return n == 0
		})
		stop()
		for _, d := range running {
			<-d
		}
	}
	return in
}

// newClient is a Client of in on a transport of its own, whose connections close with the test.
func newClient(t *testing.T, in *ingest, opts ...client.Option) *client.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := client.New(in.url, append([]client.Option{client.WithHTTPClient(&http.Client{Transport: tr})}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestSendsAndErrors: a retry with the same client_msg_id returns the first id; every refusal
// is a typed error (errors.Is and *Error with the server's fields); a batch answers per message.
func TestSendsAndErrors(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in)
	ctx := t.Context()
	d := client.Draft{OwnerID: "ann", Content: "hello", Channel: "team-42.general", ClientMsgID: "m-1"}
	a1, err := c.Send(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := c.Send(ctx, d)
	if err != nil || a2.CacheID != a1.CacheID || !a2.Duplicate {
		t.Fatalf("the same client_msg_id again: %+v %v, want %d as a duplicate", a2, err, a1.CacheID)
	}
	_, err = c.Send(ctx, client.Draft{OwnerID: "ann"})
	var e *client.Error
	if !errors.Is(err, client.ErrInvalid) || !errors.As(err, &e) || e.Field != "content" {
		t.Errorf("an empty message: %v, want ErrInvalid naming content", err)
	}
	res, err := c.SendBatch(ctx, []client.Draft{{OwnerID: "bob", Content: "one"}, {OwnerID: "bob", Content: "two", Channel: "a/b"}, {OwnerID: "bob", Content: "three", Channel: "Org:Room~1"}})
	if err != nil || res[0].Err != nil || res[2].Err != nil || !errors.Is(res[1].Err, client.ErrInvalid) || res[0].CacheID == 0 || res[2].CacheID == 0 {
		t.Fatalf("a batch with a bad channel: %+v %v, want the second refused alone", res, err)
	}
	if _, err := c.Edit(ctx, client.Edit{Channel: "team-42.general", CacheID: a1.CacheID, OwnerID: "eve", Content: "x"}); !errors.Is(err, client.ErrNotAuthor) {
		t.Errorf("another author's edit: %v, want ErrNotAuthor", err)
	}
	v, err := c.Edit(ctx, client.Edit{Channel: "team-42.general", CacheID: a1.CacheID, OwnerID: "ann", Content: "hello, edited"})
	if err != nil || v <= a1.CacheID {
		t.Fatalf("an edit: %d %v", v, err)
	}
	if _, err := c.Edit(ctx, client.Edit{Channel: "team-42.general", CacheID: a1.CacheID, OwnerID: "ann", Content: "x", IfMatch: a1.CacheID}); !errors.Is(err, client.ErrVersionMismatch) || !errors.As(err, &e) || e.Version != v {
		t.Errorf("a stale If-Match: %v, want ErrVersionMismatch naming %d", err, v)
	}
	if err := c.Delete(ctx, "elsewhere", a1.CacheID); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("a delete through another channel: %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "team-42.general", a1.CacheID); err != nil {
		t.Error(err)
	}
	p, err := c.SendPrivate(ctx, client.Draft{OwnerID: "ann", RecipientID: "bob", Content: "psst"})
	if err != nil {
		t.Fatal(err)
	}
	recent, err := c.Recent(ctx, client.Timeline{User: "bob"}, 0)
	if err != nil || len(recent) != 1 || recent[0].CacheID != p.CacheID || recent[0].Data.Content != "psst" {
		t.Errorf("bob's recent: %+v %v", recent, err)
	}
}

// TestTokenScopes: a token of the wrong scope is ErrForbidden (not ErrNotAuthor, and not
// retried), an unknown one ErrUnauthorized.
func TestTokenScopes(t *testing.T) {
	t.Parallel()
	in := startIngest(t, "read:r1,write:w1")
	ctx := t.Context()
	draft := client.Draft{OwnerID: "ann", Content: "hi", Channel: "c1"}
	reader, writer, stranger := newClient(t, in, client.WithToken("r1")), newClient(t, in, client.WithToken("w1")), newClient(t, in, client.WithToken("r2"))
	if _, err := writer.Send(ctx, draft); err != nil {
		t.Fatalf("w1 sends: %v", err)
	}
	if _, err := reader.Recent(ctx, client.Timeline{Channel: "c1"}, 0); err != nil {
		t.Fatalf("r1 reads: %v", err)
	}
	if _, err := reader.Send(ctx, draft); !errors.Is(err, client.ErrForbidden) || errors.Is(err, client.ErrNotAuthor) {
		t.Errorf("r1 sends: %v, want ErrForbidden", err)
	}
	if _, err := writer.Recent(ctx, client.Timeline{Channel: "c1"}, 0); !errors.Is(err, client.ErrForbidden) {
		t.Errorf("w1 reads: %v, want ErrForbidden", err)
	}
	if _, err := stranger.Recent(ctx, client.Timeline{Channel: "c1"}, 0); !errors.Is(err, client.ErrUnauthorized) {
		t.Errorf("an unknown token reads: %v, want ErrUnauthorized", err)
	}
}

// TestRetryAfterHonoured: over the rate limit, Send waits what the server says and succeeds; a
// context deadline shorter than the wait ends it with the rate limit's error at once.
func TestRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in)
	ctx := t.Context()
	req, _ := http.NewRequest(http.MethodPut, in.url+"/v1/rate-limit", strings.NewReader(`{"limit":1,"window_seconds":1}`))
	req.Header.Set("Content-Type", "application/json")
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("setting the rate limit: %v %v", res, err)
	}
	res.Body.Close()
	if _, err := c.Send(ctx, client.Draft{OwnerID: "ann", Content: "first"}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Send(short, client.Draft{OwnerID: "ann", Content: "too soon"}); !errors.Is(err, client.ErrRateLimited) || time.Since(start) > time.Second {
		t.Errorf("with 200 ms left: %v after %s, want ErrRateLimited at once", err, time.Since(start))
	}
	start = time.Now()
	if _, err := c.Send(ctx, client.Draft{OwnerID: "ann", Content: "second"}); err != nil {
		t.Errorf("with time to wait: %v", err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("the second send came back after %s: it did not wait for the window", d)
	}
}

// TestHistoryPages: the iterator reads every page once, in either direction.
func TestHistoryPages(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in)
	ctx := t.Context()
	var sent []int64
	for i := range 120 {
		a, err := c.Send(ctx, client.Draft{OwnerID: fmt.Sprintf("u%d", i%3), Content: fmt.Sprintf("m%d", i), Channel: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, a.CacheID)
	}
	for _, backward := range []bool{true, false} {
		var got []int64
		pages := 0
		for p, err := range c.History(ctx, client.Timeline{Channel: "c1"}, client.HistoryQuery{Backward: backward, Limit: 50}) {
			if err != nil {
				t.Fatal(err)
			}
			pages++
			ids := make([]int64, len(p.Messages))
			for i, m := range p.Messages {
				ids[i] = m.CacheID
			}
			if backward {
				got = append(ids, got...)
			} else {
				got = append(got, ids...)
			}
		}
		if pages != 3 || fmt.Sprint(got) != fmt.Sprint(sent) {
			t.Errorf("backward %t: %d pages, %d ids; want 3 pages of the 120 sent, in order", backward, pages, len(got))
		}
	}
}

// TestTailResumes: the tail of a channel goes on across cut connections (with its cursor) and
// across a cursor too old (410: history bridges the gap): every message once, in order.
func TestTailResumes(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in, client.WithRetry(client.RetryPolicy{Attempts: 50, Min: 50 * time.Millisecond, Max: 200 * time.Millisecond}))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := c.Send(ctx, client.Draft{OwnerID: "ann", Content: fmt.Sprintf("m%d", i), Channel: "room"}); err != nil {
				t.Error(err)
			}
		}
	}
	var got []string
	go func() { time.Sleep(500 * time.Millisecond); send(0, 1) }() // once the tail follows
	for ev, err := range c.Tail(ctx, client.TailQuery{Timeline: client.Timeline{Channel: "room"}}) {
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		if ev.Type != "message" {
			continue
		}
		got = append(got, ev.Entry.Data.Content)
		switch len(got) {
		case 1:
			send(1, 5)
		case 5:
			in.hs.CloseClientConnections() // cut: resumed with the cursor
			send(5, 10)
		case 10:
			// Cut, and everything flushed and trimmed meanwhile: the cursor is too old.
			in.hs.CloseClientConnections()
			send(10, 15)
			in.flush(t)
			send(15, 20)
		}
		if len(got) == 20 {
			break
		}
	}
	want := make([]string, 20)
	for i := range want {
		want[i] = fmt.Sprintf("m%d", i)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the tail gave\n%v\nwant\n%v", got, want)
	}
}

// TestTailSkipped: entries of the stream the server cannot read reach the tail's caller as
// "skipped" events naming them, each one (two in a row are not taken for repeats), and the
// tail goes on with the next message.
func TestTailSkipped(t *testing.T) {
	t.Parallel()
	in := startIngest(t)
	c := newClient(t, in)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	vc := in.valkey.Client(t)
	var bad []string
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		time.Sleep(500 * time.Millisecond) // once the tail follows
		for range 2 {
			id, err := vc.Do(ctx, vc.B().Xadd().Key(in.keys.Stream(0)).Id("*").FieldValue().FieldValue("cache_id", "9").
				FieldValue("kind", "message").FieldValue("payload", "{broken").Build()).ToString()
			if err != nil {
				t.Error(err)
			}
			bad = append(bad, id)
		}
		if _, err := c.Send(context.Background(), client.Draft{OwnerID: "ann", Content: "after", Channel: "room"}); err != nil {
			t.Error(err)
		}
	}()
	var got []string
	for ev, err := range c.Tail(ctx, client.TailQuery{Timeline: client.Timeline{Channel: "room"}}) {
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		got = append(got, ev.Type+":"+ev.Skipped+ev.Entry.Data.Content)
		if ev.Type == "message" {
			break
		}
	}
	<-wrote
	if want := []string{"skipped:" + bad[0], "skipped:" + bad[1], "message:after"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("the tail gave %v, want %v", got, want)
	}
}
