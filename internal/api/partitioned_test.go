package api_test

import (
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestEitherLayoutOverHTTP serves the same requests from each key layout — single and
// partitioned on one server, partitioned on a real 3+3 cluster — and expects the same answers:
// 202 with an id, recent rings oldest first, 429 past the limit, 204 and 404 on delete, 400 on
// bad input. A client cannot tell KEY_LAYOUT from the API.
func TestEitherLayoutOverHTTP(t *testing.T) {
	t.Parallel()
	layouts := testenv.Layouts(t, "")
	var cases []options
	for _, l := range layouts {
		cases = append(cases, options{layout: l})
	}
	cases = append(cases, options{layout: layouts[len(layouts)-1], cluster: true}) // the partitioned one, on a cluster
	for _, o := range cases {
		name := o.layout.Name()
		if o.cluster {
			name += "/cluster"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if o.cluster && testing.Short() {
				t.Skip("-short: starts a cluster")
			}
			o.rate = store.RateLimit{Limit: 3, WindowSeconds: 60, Algorithm: store.Fixed}
			b := setup(t, o)
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
			if msgs := recent.body["messages"].([]any); len(msgs) != 2 || !strings.Contains(recent.raw, `"one"`) || strings.Index(recent.raw, `"one"`) > strings.Index(recent.raw, `"three"`) {
				t.Fatalf("recent: %s, want the two public messages, oldest first", recent.raw)
			}
			bob := b.do(t, http.MethodGet, "/v1/users/bob/private-messages/recent", "", "")
			if msgs, _ := bob.body["messages"].([]any); len(msgs) != 1 || !strings.Contains(bob.raw, "psst") {
				t.Fatalf("bob's ring: %s", bob.raw)
			}
			wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/"+itoa(id), "", ""), http.StatusNoContent)
			wantStatus(t, b.do(t, http.MethodDelete, "/v1/messages/"+itoa(id+64*1_000_000_000), "", ""), http.StatusNotFound)
			if msgs := b.do(t, http.MethodGet, "/v1/messages/recent", "", "").body["messages"].([]any); len(msgs) != 1 {
				t.Fatalf("after the delete the ring holds %d, want 1", len(msgs))
			}
			wantStatus(t, b.do(t, http.MethodGet, "/readyz", "", ""), http.StatusOK)
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
