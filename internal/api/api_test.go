package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/auth"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// Both layouts are Stores.
var (
	_ api.Store = (*store.Store)(nil)
	_ api.Store = (*store.Store)(nil)
)

type testBundle struct {
	url    string
	server *testenv.Valkey
	client valkey.Client
	keys   keyspace.Keys
	reg    *prometheus.Registry
}

type options struct {
	// layout is the key layout (default: single); cluster runs it on a real 3+3 cluster.
	layout     keyspace.Layout
	cluster    bool
	token      string
	recentSize int
	rate       store.RateLimit
	backlogCap int64
	batchSlots int
	batchWait  time.Duration
}

func setup(t testing.TB, o options) *testBundle {
	t.Helper()
	var srv *testenv.Valkey
	var c valkey.Client
	if o.cluster {
		cl := testenv.StartCluster(t)
		var err error
		if c, err = valkey.NewClient(valkey.ClientOption{InitAddress: strings.Split(cl.Addrs, ",")[:2], DisableCache: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
	} else {
		srv = testenv.StartValkey(t)
		c = srv.Client(t)
	}
	if o.layout == nil {
		o.layout, _ = keyspace.New("")
	}
	if o.rate == (store.RateLimit{}) {
		o.rate = store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}
	}
	scripts, err := store.Open(c, store.Config{Layout: o.layout, RecentSize: o.recentSize, DefaultRate: o.rate, BacklogCap: o.backlogCap, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	var tokens *auth.Keyring
	if o.token != "" {
		set, err := auth.Parse(o.token)
		if err != nil {
			t.Fatal(err)
		}
		tokens = auth.NewKeyring(set)
	}
	a, err := api.New(api.Config{Store: scripts, Registerer: reg, Tokens: tokens, RecentSize: o.recentSize,
		BatchConcurrency: o.batchSlots, BatchWait: o.batchWait,
		NowFunc: func() time.Time { return time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	t.Cleanup(hs.Close)
	single, _ := o.layout.(keyspace.Keys) // the single layout's keys; the zero value (no prefix) beside another layout
	return &testBundle{url: hs.URL, server: srv, client: c, keys: single, reg: reg}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (b *testBundle) do(t *testing.T, method, path, contentType, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	holdToContract(t, method, b.url+path, req.Header, []byte(body), res, raw)
	r := response{status: res.StatusCode, header: res.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func (b *testBundle) post(t *testing.T, path, body string, header ...string) response {
	t.Helper()
	return b.do(t, http.MethodPost, path, "application/json", body, header...)
}

func (b *testBundle) streamLen(t *testing.T, kind message.Kind) int64 {
	t.Helper()
	n, _ := testenv.Do(t, b.client, "XLEN", b.keys.Stream(kind)).AsInt64()
	return n
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body %s", r.status, status, r.raw)
	}
}

func TestPostAndRecent(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	r1 := b.post(t, "/v1/messages", `{"owner_id":"alice","username":"Alice","content":"hello <b>&","created_at":"2026-11-25T09:00:00+01:00"}`)
	wantStatus(t, r1, http.StatusAccepted)
	r2 := b.post(t, "/v1/messages", `{"owner_id":"bob","username":"Bob","content":"hi"}`)
	wantStatus(t, r2, http.StatusAccepted)
	if r1.body["cache_id"] != 1.0 || r2.body["cache_id"] != 2.0 {
		t.Fatalf("cache ids = %v, %v; want 1, 2", r1.body["cache_id"], r2.body["cache_id"])
	}
	got := b.do(t, http.MethodGet, "/v1/messages/recent", "", "")
	wantStatus(t, got, http.StatusOK)
	want := `{"messages":[` +
		`{"cache_id":1,"version":1,"data":{"owner_id":"alice","channel_id":"general","username":"Alice","content":"hello <b>&","created_at":"2026-11-25T08:00:00Z"}},` +
		`{"cache_id":2,"version":2,"data":{"owner_id":"bob","channel_id":"general","username":"Bob","content":"hi","created_at":"2026-11-25T10:00:00Z"}}]}` + "\n"
	if diff := cmp.Diff(want, got.raw); diff != "" {
		t.Errorf("recent (-want +got):\n%s", diff)
	}
	if n := b.streamLen(t, message.Public); n != 2 {
		t.Errorf("stream holds %d entries, want 2", n)
	}
	last := b.do(t, http.MethodGet, "/v1/messages/recent?limit=1", "", "")
	if msgs := last.body["messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["cache_id"] != 2.0 {
		t.Errorf("limit=1 gave %s, want only message 2", last.raw)
	}
	for _, q := range []string{"0", "-1", "abc", "501", "1e3"} {
		r := b.do(t, http.MethodGet, "/v1/messages/recent?limit="+q, "", "")
		wantStatus(t, r, http.StatusBadRequest)
		if r.body["field"] != "limit" {
			t.Errorf("limit=%s: field = %v, want limit", q, r.body["field"])
		}
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, options{rate: store.RateLimit{Limit: 30, WindowSeconds: 10, Algorithm: store.Fixed}})
	wantStatus(t, b.do(t, http.MethodPut, "/v1/rate-limit", "application/json", `{"limit":3,"window_seconds":10}`), http.StatusOK)
	got := b.do(t, http.MethodGet, "/v1/rate-limit", "", "")
	if diff := cmp.Diff(map[string]any{"limit": 3.0, "window_seconds": 10.0, "algorithm": "fixed"}, got.body); diff != "" {
		t.Fatalf("rate limit (-want +got):\n%s", diff)
	}
	for range 3 {
		wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"alice","content":"x"}`), http.StatusAccepted)
	}
	r := b.post(t, "/v1/messages", `{"owner_id":"alice","content":"4th"}`)
	wantStatus(t, r, http.StatusTooManyRequests)
	if ra := r.header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After = %q, want whole seconds > 0", ra)
	}
	if r.body["error"] != "rate_limited" {
		t.Errorf("error = %v, want rate_limited", r.body["error"])
	}
	other := b.post(t, "/v1/messages", `{"owner_id":"bob","content":"y"}`)
	wantStatus(t, other, http.StatusAccepted)
	if other.body["cache_id"] != 4.0 {
		t.Errorf("bob's id = %v, want 4: the rejected message must consume no id", other.body["cache_id"])
	}
	bad := []struct{ body, field string }{
		{`{"limit":0,"window_seconds":10}`, "limit"},
		{`{"limit":3}`, "window_seconds"},
		{`{"window_seconds":3}`, "limit"},
		{`{"limit":3,"window_seconds":10,"algorithm":"leaky"}`, "algorithm"},
		{`{"limit":"3","window_seconds":10}`, "limit"},
		{`{"limit":3.5,"window_seconds":10}`, "limit"},
	}
	for _, tt := range bad {
		r := b.do(t, http.MethodPut, "/v1/rate-limit", "application/json", tt.body)
		wantStatus(t, r, http.StatusBadRequest)
		if r.body["field"] != tt.field {
			t.Errorf("PUT %s: field = %v, want %s", tt.body, r.body["field"], tt.field)
		}
	}
	wantStatus(t, b.do(t, http.MethodPut, "/v1/rate-limit", "application/json", `{"limit":5,"window_seconds":1,"algorithm":"gcra"}`), http.StatusOK)
	if got := b.do(t, http.MethodGet, "/v1/rate-limit", "", ""); got.body["algorithm"] != "gcra" {
		t.Errorf("algorithm = %v, want gcra", got.body["algorithm"])
	}
}

func TestPrivateMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, options{recentSize: 3})
	wantStatus(t, b.post(t, "/v1/private-messages", `{"owner_id":"a","recipient_id":"b","content":"a→b"}`), http.StatusAccepted)
	wantStatus(t, b.post(t, "/v1/private-messages", `{"owner_id":"c","recipient_id":"c","content":"self"}`), http.StatusAccepted)
	ids := func(user string) []float64 {
		r := b.do(t, http.MethodGet, "/v1/users/"+user+"/private-messages/recent", "", "")
		wantStatus(t, r, http.StatusOK)
		out := []float64{}
		for _, m := range r.body["messages"].([]any) {
			out = append(out, m.(map[string]any)["cache_id"].(float64))
		}
		return out
	}
	for user, want := range map[string][]float64{"a": {1}, "b": {1}, "c": {2}, "nobody": {}} {
		if diff := cmp.Diff(want, ids(user)); diff != "" {
			t.Errorf("%s's ring (-want +got):\n%s", user, diff)
		}
	}
	for i := range 5 {
		wantStatus(t, b.post(t, "/v1/private-messages", fmt.Sprintf(`{"owner_id":"a","recipient_id":"b","content":"%d"}`, i)), http.StatusAccepted)
	}
	if got := ids("b"); len(got) != 3 || got[2] != 7 {
		t.Errorf("b's ring = %v, want the newest 3 ending with 7", got)
	}
	if r := b.post(t, "/v1/private-messages", `{"owner_id":"a","content":"to nobody"}`); r.status != 400 || r.body["field"] != "recipient_id" {
		t.Errorf("no recipient: %d %s, want 400 on recipient_id", r.status, r.raw)
	}
	if r := b.post(t, "/v1/messages", `{"owner_id":"a","recipient_id":"b","content":"x"}`); r.status != 400 || r.body["field"] != "recipient_id" {
		t.Errorf("recipient on a public message: %d %s, want 400 on recipient_id", r.status, r.raw)
	}
}

// TestBadRequests: every malformed request gets a 4xx with the error code and the field at
// fault, and nothing is enqueued.
func TestBadRequests(t *testing.T) {
	t.Parallel()
	b := setup(t, options{token: ""})
	long := strings.Repeat("x", 129)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		status      int
		code        string
		field       string
	}{
		{"malformed JSON", "POST", "/v1/messages", "application/json", `{"owner_id":"a",`, 400, "invalid_json", ""},
		{"not an object", "POST", "/v1/messages", "application/json", `["a"]`, 400, "invalid", "body"},
		{"empty body", "POST", "/v1/messages", "application/json", ``, 400, "invalid_json", ""},
		{"trailing data", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x"} {}`, 400, "invalid_json", ""},
		{"unknown field", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x","admin":true}`, 400, "unknown_field", "admin"},
		{"duplicate key", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x","content":"y"}`, 400, "invalid_json", "content"},
		{"number for string", "POST", "/v1/messages", "application/json", `{"owner_id":7,"content":"x"}`, 400, "invalid", "owner_id"},
		{"deep nesting", "POST", "/v1/messages", "application/json", strings.Repeat("[", 100) + strings.Repeat("]", 100), 400, "invalid_json", ""},
		{"oversized body", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "body_too_large", ""},
		{"empty content", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":""}`, 400, "invalid", "content"},
		{"missing content", "POST", "/v1/messages", "application/json", `{"owner_id":"a"}`, 400, "invalid", "content"},
		{"content too long", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"` + strings.Repeat("x", 4097) + `"}`, 400, "invalid", "content"},
		{"NUL in content", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x\u0000y"}`, 400, "invalid", "content"},
		{"invalid UTF-8", "POST", "/v1/messages", "application/json", "{\"owner_id\":\"a\",\"content\":\"\xff\xfe\"}", 400, "invalid_json", ""},
		{"129-byte owner id", "POST", "/v1/messages", "application/json", `{"owner_id":"` + long + `","content":"x"}`, 400, "invalid", "owner_id"},
		{"empty owner id", "POST", "/v1/messages", "application/json", `{"owner_id":"","content":"x"}`, 400, "invalid", "owner_id"},
		{"owner id with space", "POST", "/v1/messages", "application/json", `{"owner_id":"a b","content":"x"}`, 400, "invalid", "owner_id"},
		{"owner id with control", "POST", "/v1/messages", "application/json", `{"owner_id":"a\u0007","content":"x"}`, 400, "invalid", "owner_id"},
		{"username too long", "POST", "/v1/messages", "application/json", `{"owner_id":"a","username":"` + strings.Repeat("u", 65) + `","content":"x"}`, 400, "invalid", "username"},
		{"bad created_at", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x","created_at":"yesterday"}`, 400, "invalid", "created_at"},
		{"empty client_msg_id", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x","client_msg_id":""}`, 400, "invalid", "client_msg_id"},
		{"long client_msg_id", "POST", "/v1/messages", "application/json", `{"owner_id":"a","content":"x","client_msg_id":"` + long + `"}`, 400, "invalid", "client_msg_id"},
		{"wrong method", "GET", "/v1/messages", "", "", 405, "method_not_allowed", ""},
		{"wrong method on delete", "POST", "/v1/messages/1", "application/json", "{}", 405, "method_not_allowed", ""},
		{"wrong content type", "POST", "/v1/messages", "text/plain", `{"owner_id":"a","content":"x"}`, 415, "unsupported_media_type", ""},
		{"no content type", "POST", "/v1/messages", "", `{"owner_id":"a","content":"x"}`, 415, "unsupported_media_type", ""},
		{"unknown path", "GET", "/v2/anything", "", "", 404, "not_found", ""},
		{"private: 129-byte recipient", "POST", "/v1/private-messages", "application/json", `{"owner_id":"a","recipient_id":"` + long + `","content":"x"}`, 400, "invalid", "recipient_id"},
		{"recent of a bad user id", "GET", "/v1/users/a%20b/private-messages/recent", "", "", 400, "invalid", "id"},
		{"delete of a non-number", "DELETE", "/v1/messages/abc", "", "", 400, "invalid", "cache_id"},
		{"delete of +1", "DELETE", "/v1/messages/+1", "", "", 400, "invalid", "cache_id"},
		{"delete of zero", "DELETE", "/v1/messages/0", "", "", 400, "invalid", "cache_id"},
		{"delete never issued", "DELETE", "/v1/messages/99", "", "", 404, "not_found", ""},
		{"batch: empty", "POST", "/v1/messages/batch", "application/json", `{"messages":[]}`, 400, "invalid", "messages"},
		{"batch: not a list", "POST", "/v1/messages/batch", "application/json", `{"messages":{}}`, 400, "invalid", "messages"},
		{"batch: too large", "POST", "/v1/messages/batch", "application/json", `{"messages":["` + strings.Repeat("x", 1<<20) + `"]}`, 413, "body_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.do(t, tt.method, tt.path, tt.contentType, tt.body)
			if r.status != tt.status || r.body["error"] != tt.code {
				t.Fatalf("got %d %s, want %d with error %q", r.status, r.raw, tt.status, tt.code)
			}
			if got, _ := r.body["field"].(string); got != tt.field {
				t.Errorf("field = %q, want %q", got, tt.field)
			}
			if detail, _ := r.body["detail"].(string); detail == "" {
				t.Errorf("no detail in %s", r.raw)
			}
			if tt.status == 405 && r.header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
	for _, k := range message.Kinds {
		if n := b.streamLen(t, k); n != 0 {
			t.Errorf("%s stream holds %d entries after bad requests, want 0", k, n)
		}
		if v := testenv.Do(t, b.client, "GET", b.keys.Counter(k)); !valkey.IsValkeyNil(v.Error()) {
			t.Errorf("%s counter is set after bad requests: an id was consumed", k)
		}
	}
	rejected := testutil.ToFloat64(counter(t, b.reg, "chatpipe_ingest_messages_rejected_total", "kind", "message", "reason", "invalid"))
	if rejected < 20 {
		t.Errorf("rejected{reason=invalid} = %v, want every bad message counted", rejected)
	}
}

func TestBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, options{rate: store.RateLimit{Limit: 2, WindowSeconds: 60, Algorithm: store.Fixed}})
	body := `{"messages":[
		{"owner_id":"a","content":"1"},
		{"owner_id":"a","content":""},
		{"owner_id":"a","content":"2","extra":1},
		{"owner_id":"b","content":"1","client_msg_id":"k"},
		{"owner_id":"a","content":"3"},
		{"owner_id":"a","content":"4"},
		{"owner_id":"b","content":"1","client_msg_id":"k"}
	]}`
	r := b.post(t, "/v1/messages/batch", body)
	wantStatus(t, r, http.StatusOK)
	var got []string
	for _, res := range r.body["results"].([]any) {
		m := res.(map[string]any)
		if id, ok := m["cache_id"]; ok {
			got = append(got, fmt.Sprint(id))
		} else {
			got = append(got, m["error"].(string))
		}
	}
	want := []string{"1", "invalid", "unknown_field", "2", "3", "rate_limited", "2"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if n := b.streamLen(t, message.Public); n != 3 {
		t.Errorf("stream holds %d entries, want 3", n)
	}
	many := `{"messages":[` + strings.TrimSuffix(strings.Repeat(`{"owner_id":"z","content":"x"},`, 1001), ",") + `]}`
	if r := b.post(t, "/v1/messages/batch", many); r.status != 400 || r.body["field"] != "messages" {
		t.Errorf("1001 messages: %d %s, want 400 on messages", r.status, r.raw)
	}
}

func TestClientMsgIDOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	body := `{"owner_id":"a","content":"once","client_msg_id":"retry-1"}`
	first := b.post(t, "/v1/messages", body)
	second := b.post(t, "/v1/messages", body)
	wantStatus(t, second, http.StatusAccepted)
	if first.body["cache_id"] != second.body["cache_id"] || second.body["duplicate"] != true {
		t.Fatalf("first %s, second %s: want the same cache id, marked duplicate", first.raw, second.raw)
	}
	var wg sync.WaitGroup
	ids := make([]any, 8)
	for i := range ids {
		wg.Go(func() {
			ids[i] = b.post(t, "/v1/messages", `{"owner_id":"a","content":"c","client_msg_id":"retry-2"}`).body["cache_id"]
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id != 2.0 {
			t.Fatalf("concurrent ids = %v, want all 2", ids)
		}
	}
	if n := b.streamLen(t, message.Public); n != 2 {
		t.Errorf("stream holds %d entries, want 2", n)
	}
	recent := b.do(t, http.MethodGet, "/v1/messages/recent", "", "")
	if n := len(recent.body["messages"].([]any)); n != 2 {
		t.Errorf("ring holds %d entries, want 2", n)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.post(t, "/v1/messages", `{"owner_id":"a","content":"keep"}`)
	b.post(t, "/v1/messages", `{"owner_id":"a","content":"drop"}`)
	wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/2", "", ""), http.StatusNoContent)
	recent := b.do(t, http.MethodGet, "/v1/messages/recent", "", "")
	if msgs := recent.body["messages"].([]any); len(msgs) != 1 {
		t.Errorf("ring after delete: %s, want message 1 only", recent.raw)
	}
	if n := b.streamLen(t, message.Public); n != 3 {
		t.Errorf("stream holds %d entries, want 2 messages and 1 deletion", n)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	b := setup(t, options{token: "s3cret"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret"}, {"Authorization", "Basic s3cret"}, {"Authorization", "Bearer s3cret2"}} {
		r := b.post(t, "/v1/messages", `{"owner_id":"a","content":"x"}`, h...)
		wantStatus(t, r, http.StatusUnauthorized)
		if r.body["error"] != "unauthorized" || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("with %v: %s, want unauthorized with WWW-Authenticate", h, r.raw)
		}
		if strings.Contains(r.raw, "s3cret") {
			t.Errorf("the token leaked into a response: %s", r.raw)
		}
	}
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"a","content":"x"}`, "Authorization", "Bearer s3cret"), http.StatusAccepted)
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"a","content":"y"}`, "Authorization", "bearer s3cret"), http.StatusAccepted)
	wantStatus(t, b.do(t, http.MethodGet, "/healthz", "", ""), http.StatusOK)
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
}

// TestAuthScopes: with tokens of each scope, every /v1/ operation lets in the scopes that have
// its method and answers 403 forbidden to the others; an unknown token gets 401 everywhere.
func TestAuthScopes(t *testing.T) {
	t.Parallel()
	b := setup(t, options{token: "read:r1,write:w1,both1"})
	ops := []struct{ method, path, body string }{
		{"GET", "/v1/messages/recent", ""},
		{"GET", "/v1/users/u1/private-messages/recent", ""},
		{"GET", "/v1/channels/c1/messages/recent", ""},
		{"GET", "/v1/messages/history", ""},
		{"GET", "/v1/users/u1/private-messages/history", ""},
		{"GET", "/v1/channels/c1/messages/history", ""},
		{"GET", "/v1/messages/stream", ""},
		{"GET", "/v1/users/u1/private-messages/stream", ""},
		{"GET", "/v1/channels/stream?all=true", ""},
		{"GET", "/v1/channels/c1/messages/stream", ""},
		{"GET", "/v1/rate-limit", ""},
		{"POST", "/v1/messages", `{"owner_id":"a","content":"x"}`},
		{"POST", "/v1/channels/c1/messages", `{"owner_id":"a","content":"x"}`},
		{"POST", "/v1/private-messages", `{"owner_id":"a","recipient_id":"b","content":"x"}`},
		{"POST", "/v1/messages/batch", `{"messages":[{"owner_id":"a","content":"x"}]}`},
		{"PUT", "/v1/rate-limit", `{"limit":1000000,"window_seconds":1,"algorithm":"fixed"}`},
		{"PATCH", "/v1/messages/1", `{"owner_id":"a","content":"y"}`},
		{"PATCH", "/v1/channels/c1/messages/1", `{"owner_id":"a","content":"y"}`},
		{"PATCH", "/v1/private-messages/1", `{"owner_id":"a","content":"y"}`},
		{"DELETE", "/v1/messages/999", ""},
		{"DELETE", "/v1/channels/c1/messages/999", ""},
		{"DELETE", "/v1/private-messages/999", ""},
	}
	for _, op := range ops {
		reads := op.method == "GET"
		for _, tc := range []struct {
			token string
			want  string // the error code, or "" for any answer past auth
		}{
			{"r1", map[bool]string{true: "", false: "forbidden"}[reads]},
			{"w1", map[bool]string{true: "forbidden", false: ""}[reads]},
			{"both1", ""},
			{"unknown", "unauthorized"},
			{"", "unauthorized"},
			{strings.Repeat("r1", 5000), "unauthorized"},
		} {
			ct := ""
			if op.body != "" {
				ct = "application/json"
			}
			r := b.do(t, op.method, op.path, ct, op.body, "Authorization", "Bearer "+tc.token, "Accept", "application/json")
			code, _ := r.body["error"].(string)
			switch {
			case tc.want == "" && (r.status == http.StatusUnauthorized || code == "forbidden"):
				t.Errorf("%s %s with %.10s: %d %s, want it let in", op.method, op.path, tc.token, r.status, r.raw)
			case tc.want == "forbidden" && (r.status != http.StatusForbidden || code != "forbidden"):
				t.Errorf("%s %s with %s: %d %s, want 403 forbidden", op.method, op.path, tc.token, r.status, r.raw)
			case tc.want == "unauthorized" && (r.status != http.StatusUnauthorized || code != "unauthorized"):
				t.Errorf("%s %s with %.10s: %d %s, want 401 unauthorized", op.method, op.path, tc.token, r.status, r.raw)
			}
			if tc.token != "" && strings.Contains(r.raw, tc.token) {
				t.Errorf("%s %s: the token is in the answer %s", op.method, op.path, r.raw)
			}
		}
	}
	// A method the path lacks is answered after auth: 405 to a known token of either scope.
	wantStatus(t, b.do(t, "DELETE", "/v1/rate-limit", "", "", "Authorization", "Bearer r1"), http.StatusForbidden)
	wantStatus(t, b.do(t, "DELETE", "/v1/rate-limit", "", "", "Authorization", "Bearer w1"), http.StatusMethodNotAllowed)
}

func TestValkeyDown(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"a","content":"x"}`), http.StatusAccepted)
	b.server.Stop()
	start := time.Now()
	r := b.post(t, "/v1/messages", `{"owner_id":"a","content":"x"}`)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") != "1" || r.body["error"] != "unavailable" {
		t.Errorf("got %v %s, want unavailable with Retry-After: 1", r.header, r.raw)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("503 took %s, want under a second", d)
	}
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusServiceUnavailable)
	wantStatus(t, b.do(t, http.MethodGet, "/healthz", "", ""), http.StatusOK)
	batch := b.post(t, "/v1/messages/batch", `{"messages":[{"owner_id":"a","content":"x"}]}`)
	wantStatus(t, batch, http.StatusServiceUnavailable)
	if r := b.do(t, http.MethodPut, "/v1/messages/1/reactions/ok/u1", "", ""); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body["error"] != "unavailable" {
		t.Errorf("a reaction with Valkey down: %d %v %s, want 503 unavailable with Retry-After", r.status, r.header, r.raw)
	}
	b.server.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = b.post(t, "/v1/messages", `{"owner_id":"a","content":"back"}`)
		if r.status == http.StatusAccepted || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	wantStatus(t, r, http.StatusAccepted)
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
	errs := testutil.ToFloat64(counter(t, b.reg, "chatpipe_ingest_valkey_errors_total", "op", "enqueue_message"))
	if errs < 1 {
		t.Errorf("valkey errors counter = %v, want at least 1", errs)
	}
}

func TestShutdownReadiness(t *testing.T) {
	t.Parallel()
	srv := testenv.StartValkey(t)
	scripts, _ := store.Open(srv.Client(t), store.Config{})
	a, _ := api.New(api.Config{Store: scripts})
	hs := httptest.NewServer(a)
	defer hs.Close()
	a.SetReady(false)
	res, err := http.Get(hs.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while shutting down = %d, want 503", res.StatusCode)
	}
}

func TestMetricsLabels(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	b.post(t, "/v1/messages", `{"owner_id":"a","content":"x"}`)
	b.do(t, http.MethodDelete, "/v1/messages/1", "", "")
	b.do(t, http.MethodGet, "/v1/users/someone/private-messages/recent", "", "")
	// Routes are labelled by pattern, never by path: no id reaches a label.
	families, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				buf.WriteString(l.GetValue() + "\n")
			}
		}
	}
	for _, leak := range []string{"someone", "/v1/messages/1\n"} {
		if strings.Contains(buf.String(), leak) {
			t.Errorf("a label holds %q", leak)
		}
	}
	if n := testutil.ToFloat64(counter(t, b.reg, "chatpipe_ingest_requests_total", "route", "/v1/messages/{cache_id}", "code", "2xx")); n != 1 {
		t.Errorf("requests{route=/v1/messages/{cache_id},code=2xx} = %v, want 1", n)
	}
}

// counter finds one series of a registered counter by its labels.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue metrics
				}
			}
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return nil
}

// TestHostileInputStoredVerbatim: key-pattern characters in ids and content that looks like
// Lua or SQL are stored byte for byte and never executed; a 10 MB body is refused while read.
func TestHostileInputStoredVerbatim(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	owner := `*?[{:}]\`
	content := `"]]; redis.call('FLUSHALL') --'; DROP TABLE chat_messages; -- {{.}} ${x} \u2028`
	body, _ := json.Marshal(map[string]string{"owner_id": owner, "content": content})
	wantStatus(t, b.post(t, "/v1/messages", string(body)), http.StatusAccepted)
	r := b.do(t, http.MethodGet, "/v1/messages/recent", "", "")
	data := r.body["messages"].([]any)[0].(map[string]any)["data"].(map[string]any)
	if data["owner_id"] != owner || data["content"] != content {
		t.Fatalf("stored %q / %q, want them verbatim", data["owner_id"], data["content"])
	}
	if n, _ := testenv.Do(t, b.client, "EXISTS", b.keys.RateLimit(owner)).AsInt64(); n != 1 {
		t.Fatal("the rate-limit key of an id with pattern characters is not the literal key")
	}
	if n, _ := testenv.Do(t, b.client, "DBSIZE").AsInt64(); n < 3 {
		t.Fatalf("DBSIZE = %d: something was flushed", n)
	}
	huge := `{"owner_id":"a","content":"` + strings.Repeat("x", 10<<20) + `"}`
	for _, path := range []string{"/v1/messages", "/v1/messages/batch"} {
		if r := b.post(t, path, huge); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("10 MB body on %s: %d, want 413", path, r.status)
		}
	}
}

// TestBatchConcurrency: past BatchConcurrency, a batch waits for a slot with its body unread,
// then gets 503 + Retry-After; the batch holding the slot is not disturbed, and nothing of the
// refused batch is enqueued.
func TestBatchConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, options{batchSlots: 1, batchWait: 100 * time.Millisecond})
	// The first batch holds the only slot while its body trickles in.
	pr, pw := io.Pipe()
	first := make(chan *http.Response, 1)
	go func() {
		res, err := http.Post(b.url+"/v1/messages/batch", "application/json", pr)
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	if _, err := pw.Write([]byte(`{"messages":[{"owner_id":"a","username":"A","content":"held"}`)); err != nil {
		t.Fatal(err)
	}
	var r response
	early := 0 // probes that got in before the first batch took the slot (a busy machine)
	testenv.WaitFor(t, "the second batch to be refused", 5*time.Second, func() bool {
		r = b.do(t, http.MethodPost, "/v1/messages/batch", "application/json", `{"messages":[{"owner_id":"b","username":"B","content":"refused"}]}`)
		if r.status == http.StatusOK {
			early++
		}
		return r.status == http.StatusServiceUnavailable
	})
	if r.header.Get("Retry-After") != "1" || r.body["error"] != "unavailable" {
		t.Fatalf("refused batch: %d %v %s", r.status, r.header, r.raw)
	}
	if _, err := pw.Write([]byte(`]}`)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	res := <-first
	if res == nil {
		t.FailNow()
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if want := fmt.Sprintf(`"cache_id":%d`, early+1); res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		t.Fatalf("held batch: %d %s, want %s", res.StatusCode, body, want)
	}
	// The slot is free again, and the refused batch took no id.
	r = b.do(t, http.MethodPost, "/v1/messages/batch", "application/json", `{"messages":[{"owner_id":"b","username":"B","content":"after"}]}`)
	if want := fmt.Sprintf(`"cache_id":%d`, early+2); r.status != http.StatusOK || !strings.Contains(r.raw, want) {
		t.Fatalf("batch after the slot freed: %d %s, want %s", r.status, r.raw, want)
	}
}
