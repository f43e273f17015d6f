package api_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/api"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestPartitionedStoreOverHTTP serves the API from the partitioned layout on a real 3+3
// cluster: the same requests get the same kinds of answers as in the single layout (202 with an
// id, recent rings oldest first, 429 past the limit, 204 and 404 on delete, 400 on bad input).
func TestPartitionedStoreOverHTTP(t *testing.T) {
	t.Parallel()
	cl := testenv.StartCluster(t)
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: strings.Split(cl.Addrs, ",")[:2], DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys, _ := keyspace.NewPartitioned("", keyspace.DefaultPartitions)
	ops, err := lua.NewPartitioned(c, keys, lua.Config{DefaultRate: lua.RateLimit{Limit: 3, WindowSeconds: 60, Algorithm: lua.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Store: ops})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(a)
	defer hs.Close()
	b := &testBundle{url: hs.URL}
	r := b.post(t, "/v1/messages", `{"owner_id":"alice","content":"one"}`)
	wantStatus(t, r, http.StatusAccepted)
	id := int64(r.body["cache_id"].(float64))
	wantStatus(t, b.post(t, "/v1/private-messages", `{"owner_id":"alice","recipient_id":"bob","content":"psst"}`), http.StatusAccepted)
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"alice","content":"three"}`), http.StatusAccepted)
	limited := b.post(t, "/v1/messages", `{"owner_id":"alice","content":"four"}`)
	wantStatus(t, limited, http.StatusTooManyRequests)
	if limited.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	wantStatus(t, b.post(t, "/v1/messages", `{"owner_id":"","content":"x"}`), http.StatusBadRequest)
	recent := b.do(t, http.MethodGet, "/v1/messages/recent?limit=10", "", "")
	wantStatus(t, recent, http.StatusOK)
	if msgs := recent.body["messages"].([]any); len(msgs) != 2 {
		t.Fatalf("recent: %s, want two public messages", recent.raw)
	}
	bob := b.do(t, http.MethodGet, "/v1/users/bob/private-messages/recent", "", "")
	if msgs, _ := bob.body["messages"].([]any); len(msgs) != 1 || !strings.Contains(bob.raw, "psst") {
		t.Fatalf("bob's ring: %s", bob.raw)
	}
	wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/"+itoa(id), "", ""), http.StatusNoContent)
	wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/"+itoa(id+64*1_000_000), "", ""), http.StatusNotFound)
	if msgs := b.do(t, http.MethodGet, "/v1/messages/recent", "", "").body["messages"].([]any); len(msgs) != 1 {
		t.Fatalf("after the delete the ring holds %d, want 1", len(msgs))
	}
	wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
