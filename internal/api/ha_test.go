package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestValkeyFull: a full Valkey under noeviction gets 503 valkey_full with Retry-After on every
// write endpoint (never 500), /readyz fails until a write is taken again, nothing is enqueued
// meanwhile, and the next accepted message takes the next id.
func TestValkeyFull(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"a","content":"before"}`), http.StatusAccepted)
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory", "1")
	for _, req := range []struct{ path, body string }{
		{"/v1/messages", `{"owner_id":"a","content":"x"}`},
		{"/v1/private-messages", `{"owner_id":"a","recipient_id":"b","content":"x"}`},
		{"/v1/messages/batch", `{"messages":[{"owner_id":"a","content":"x"},{"owner_id":"b","content":"y"}]}`},
	} {
		r := b.post(t, req.path, req.body)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") != "1" || r.body["error"] != "valkey_full" {
			t.Errorf("%s while full: %v %s, want valkey_full with Retry-After: 1", req.path, r.header, r.raw)
		}
	}
	// A reaction's first write is refused before the script wrote anything.
	if r := b.do(t, http.MethodPut, "/v1/messages/1/reactions/ok/a", "", ""); r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "1" || r.body["error"] != "valkey_full" {
		t.Errorf("a reaction while full: %d %v %s, want valkey_full with Retry-After: 1", r.status, r.header, r.raw)
	}
	// A deletion still goes through: its script's first write (LREM) is one Valkey allows
	// when full, and a deletion must not be lost.
	wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/1", "", ""), http.StatusNoContent)
	ready := b.do(t, http.MethodGet, "/readyz", "", "")
	wantStatus(t, ready, http.StatusServiceUnavailable)
	if ready.body["error"] != "valkey_full" {
		t.Errorf("readyz while full: %s, want valkey_full", ready.raw)
	}
	if n := b.streamLen(t, message.Public); n != 2 {
		t.Fatalf("stream holds %d, want 2: the first message and the deletion", n)
	}
	if got := testutil.ToFloat64(counter(t, b.reg, "chatpipe_ingest_messages_rejected_total", "kind", "message", "reason", "valkey_full")); got != 3 {
		t.Errorf("rejected{valkey_full} = %v, want 3", got)
	}
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory", "0")
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
	r := b.post(t, "/v1/messages", `{"owner_id":"a","content":"after"}`)
	wantStatus(t, r, http.StatusAccepted)
	if r.body["cache_id"] != float64(2) {
		t.Fatalf("after the full spell: %s, want cache_id 2", r.raw)
	}
}

// TestReadOnlyReplica: ingest pointed at a replica (as it is for a moment during a failover)
// answers 503 unavailable with Retry-After, never 500.
func TestReadOnlyReplica(t *testing.T) {
	t.Parallel()
	b := setup(t, options{})
	other := testenv.StartValkey(t)
	_, port, _ := strings.Cut(other.Addr, ":")
	testenv.Do(t, b.client, "REPLICAOF", "127.0.0.1", port)
	testenv.WaitFor(t, "the server to become a replica", 5*time.Second, func() bool {
		s, _ := testenv.Do(t, b.client, "INFO", "replication").ToString()
		return strings.Contains(s, "role:slave")
	})
	for _, req := range []struct{ path, body string }{
		{"/v1/messages", `{"owner_id":"a","content":"x"}`},
		{"/v1/messages/batch", `{"messages":[{"owner_id":"a","content":"x"}]}`},
	} {
		r := b.post(t, req.path, req.body)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" || r.body["error"] != "unavailable" {
			t.Errorf("%s on a replica: %v %s, want unavailable with Retry-After", req.path, r.header, r.raw)
		}
	}
}
