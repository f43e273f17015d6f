package api_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestEdits, in both layouts: only the author edits (403 for another owner_id, nothing changes);
// an unknown id, another channel's, a deleted message are 404; If-Match with a stale version is
// 412 naming the current one, with the current one 200; the ring, history and the tail carry the
// latest version with edited_at, while the message waits in the backlog and once it is in
// PostgreSQL; an edit before the flush and one after both end in PostgreSQL's final state.
func TestEdits(t *testing.T) {
	eachLayout(t, func(t *testing.T, layout keyspace.Layout) {
		b := setupReadLayout(t, layout, testenv.Postgres(t), 50, 10)
		const ch = "team-42.general"
		tail, code := testenv.OpenSSE(t, http.DefaultClient, b.url+"/v1/channels/"+ch+"/messages/stream", "")
		if code != http.StatusOK {
			t.Fatalf("opening the channel's stream: %d", code)
		}
		defer tail.Close()
		post := func(path, body string) int64 {
			t.Helper()
			r := b.post(t, path, body)
			wantStatus(t, r, http.StatusAccepted)
			return int64(r.body["cache_id"].(float64))
		}
		a := post("/v1/channels/"+ch+"/messages", `{"owner_id":"u1","username":"U1","content":"a v1"}`)
		gone := post("/v1/channels/"+ch+"/messages", `{"owner_id":"u1","content":"to be deleted"}`)
		dm := post("/v1/private-messages", `{"owner_id":"u1","recipient_id":"u2","content":"dm v1"}`)
		edit := func(path, owner, content string, header ...string) response {
			t.Helper()
			return b.do(t, http.MethodPatch, path, "application/json", fmt.Sprintf(`{"owner_id":%q,"content":%q}`, owner, content), header...)
		}
		aPath := fmt.Sprintf("/v1/channels/%s/messages/%d", ch, a)
		version := func(r response) int64 {
			t.Helper()
			wantStatus(t, r, http.StatusOK)
			if r.body["cache_id"] != float64(a) && r.body["cache_id"] != float64(dm) {
				t.Errorf("edit answer %s names another id", r.raw)
			}
			if r.body["version"] == nil {
				t.Fatalf("edit answer %s has no version", r.raw)
			}
			return int64(r.body["version"].(float64))
		}
		v2 := version(edit(aPath, "u1", "a v2"))
		if v2 <= a {
			t.Fatalf("the edit's version %d is not above the message's id %d", v2, a)
		}
		for _, c := range []struct {
			path, owner string
			header      []string
			status      int
			code        string
		}{
			{aPath, "u9", nil, http.StatusForbidden, "not_author"},
			{fmt.Sprintf("/v1/channels/elsewhere/messages/%d", a), "u1", nil, http.StatusNotFound, "not_found"},
			{fmt.Sprintf("/v1/messages/%d", a), "u1", nil, http.StatusNotFound, "not_found"},
			{fmt.Sprintf("/v1/channels/%s/messages/%d", ch, a+1_000_000), "u1", nil, http.StatusNotFound, "not_found"},
			{aPath, "u1", []string{"If-Match", fmt.Sprintf(`"%d"`, a)}, http.StatusPreconditionFailed, "version_mismatch"},
			{fmt.Sprintf("/v1/private-messages/%d", dm), "u2", nil, http.StatusForbidden, "not_author"},
		} {
			r := edit(c.path, c.owner, "not allowed", c.header...)
			if r.status != c.status || r.body["error"] != c.code {
				t.Errorf("PATCH %s as %s %v: %d %s, want %d %s", c.path, c.owner, c.header, r.status, r.raw, c.status, c.code)
			}
			if c.code == "version_mismatch" && r.body["version"] != float64(v2) {
				t.Errorf("412 names version %v, want the current %d", r.body["version"], v2)
			}
		}
		v3 := version(edit(aPath, "u1", "a v3", "If-Match", fmt.Sprintf(`"%d"`, v2)))
		vdm := version(edit(fmt.Sprintf("/v1/private-messages/%d", dm), "u1", "dm v2"))
		wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/%s/messages/%d", ch, gone), "", ""), http.StatusNoContent)
		if r := edit(fmt.Sprintf("/v1/channels/%s/messages/%d", ch, gone), "u1", "after the delete"); r.status != http.StatusNotFound {
			t.Errorf("editing a deleted message: %d %s, want 404", r.status, r.raw)
		}

		wantLatest := func(stage string, want map[int64]struct {
			content string
			version int64
		}, msgs []testenv.HistoryMessage) {
			t.Helper()
			got := map[int64]testenv.HistoryMessage{}
			for _, m := range msgs {
				got[m.CacheID] = m
			}
			for id, w := range want {
				m, ok := got[id]
				switch {
				case !ok:
					t.Errorf("%s: message %d missing", stage, id)
				case m.Data.Content != w.content || m.Version != w.version || m.Data.EditedAt == "" || m.Data.CreatedAt == "":
					t.Errorf("%s: message %d is %+v, want %q at version %d with edited_at", stage, id, m, w.content, w.version)
				}
			}
			if _, ok := got[gone]; ok && !strings.Contains(stage, "private") {
				t.Errorf("%s: the deleted message %d is there", stage, gone)
			}
		}
		type latest = map[int64]struct {
			content string
			version int64
		}
		pub := latest{a: {"a v3", v3}}
		priv := latest{dm: {"dm v2", vdm}}
		check := func(stage string) {
			t.Helper()
			wantLatest(stage+", channel history", pub, testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/channels/"+ch+"/messages/history", true, 10))
			wantLatest(stage+", channel ring", pub, testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/channels/"+ch+"/messages/recent"))
			for _, u := range []string{"u1", "u2"} {
				wantLatest(stage+", private history of "+u, priv, testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/users/"+u+"/private-messages/history", false, 10))
				wantLatest(stage+", private ring of "+u, priv, testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/users/"+u+"/private-messages/recent"))
			}
		}
		check("in the backlog")
		b.flushAll(t, 2)
		check("in PostgreSQL")

		// An edit of a flushed message: found in PostgreSQL, seen by history at once.
		v4 := version(edit(aPath, "u1", "a v4", "If-Match", fmt.Sprintf("%d", v3)))
		pub = latest{a: {"a v4", v4}}
		check("edited after the flush")
		b.flushAll(t, 2)
		check("flushed again")

		// The tail: the creates, then an edit event per accepted edit, in version order, each
		// the whole message; then the deletion.
		var got []string
		for len(got) < 6 {
			ev, ok := tail.Next()
			if !ok {
				t.Fatalf("the tail ended after %v", got)
			}
			_, m := eventID(t, ev)
			got = append(got, fmt.Sprintf("%s %d v%d %s", ev.Type, m.CacheID, m.Version, m.Data.Content))
		}
		want := []string{
			fmt.Sprintf("message %d v%d a v1", a, a), fmt.Sprintf("message %d v%d to be deleted", gone, gone),
			fmt.Sprintf("edit %d v%d a v2", a, v2), fmt.Sprintf("edit %d v%d a v3", a, v3),
			fmt.Sprintf("delete %d v0 ", gone), fmt.Sprintf("edit %d v%d a v4", a, v4),
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("tail:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}

		// An author whose id the edit script does not splice (a quote in it): ingest finds the
		// message itself, in the backlog, and edits it whole.
		q := post("/v1/channels/"+ch+"/messages", `{"owner_id":"q\"uote","content":"q v1"}`)
		r := edit(fmt.Sprintf("/v1/channels/%s/messages/%d", ch, q), `q"uote`, `q "v2"`)
		wantStatus(t, r, http.StatusOK)
		pub = latest{a: {"a v4", v4}, q: {`q "v2"`, int64(r.body["version"].(float64))}}
		check("an author id with a quote")
	})
}

// TestEditBadInput: every malformed edit is 400 naming its field (or 415, 413), and changes
// nothing.
func TestEditBadInput(t *testing.T) {
	t.Parallel()
	b := setupRead(t, testenv.Postgres(t), 50, 10)
	r := b.post(t, "/v1/messages", `{"owner_id":"u1","content":"original"}`)
	wantStatus(t, r, http.StatusAccepted)
	path := fmt.Sprintf("/v1/messages/%d", int64(r.body["cache_id"].(float64)))
	for _, c := range []struct {
		path, body string
		header     []string
		status     int
		field      string
	}{
		{path, ``, nil, http.StatusBadRequest, ""},
		{path, `{`, nil, http.StatusBadRequest, ""},
		{path, `[]`, nil, http.StatusBadRequest, ""},
		{path, `{"owner_id":"u1"}`, nil, http.StatusBadRequest, "content"},
		{path, `{"owner_id":"u1","content":""}`, nil, http.StatusBadRequest, "content"},
		{path, `{"owner_id":"u1","content":"` + strings.Repeat("x", 4097) + `"}`, nil, http.StatusBadRequest, "content"},
		{path, `{"owner_id":"u1","content":"a\u0000b"}`, nil, http.StatusBadRequest, "content"},
		{path, `{"content":"x"}`, nil, http.StatusBadRequest, "owner_id"},
		{path, `{"owner_id":"u 1","content":"x"}`, nil, http.StatusBadRequest, "owner_id"},
		{path, `{"owner_id":"u1","content":"x","username":"changed"}`, nil, http.StatusBadRequest, "username"},
		{path, `{"owner_id":"u1","content":"x","version":99}`, nil, http.StatusBadRequest, "version"},
		{path, `{"owner_id":"u1","content":"x"}`, []string{"If-Match", `"abc"`}, http.StatusBadRequest, "If-Match"},
		{path, `{"owner_id":"u1","content":"x"}`, []string{"If-Match", `W/"1"`}, http.StatusBadRequest, "If-Match"},
		{path, `{"owner_id":"u1","content":"x"}`, []string{"If-Match", `"-1"`}, http.StatusBadRequest, "If-Match"},
		{path, `{"owner_id":"u1","content":"x"}`, []string{"If-Match", `"99999999999999999999"`}, http.StatusBadRequest, "If-Match"},
		{"/v1/messages/abc", `{"owner_id":"u1","content":"x"}`, nil, http.StatusBadRequest, "cache_id"},
		{"/v1/messages/0", `{"owner_id":"u1","content":"x"}`, nil, http.StatusBadRequest, "cache_id"},
		{"/v1/channels/a%2Fb/messages/1", `{"owner_id":"u1","content":"x"}`, nil, http.StatusBadRequest, "channel"},
		{path, `{"owner_id":"u1","content":"` + strings.Repeat("x", 70_000) + `"}`, nil, http.StatusRequestEntityTooLarge, ""},
	} {
		r := b.do(t, http.MethodPatch, c.path, "application/json", c.body, c.header...)
		if r.status != c.status || (c.field != "" && r.body["field"] != c.field) {
			t.Errorf("PATCH %s %.60s %v: %d %s, want %d naming %q", c.path, c.body, c.header, r.status, r.raw, c.status, c.field)
		}
	}
	if r := b.do(t, http.MethodPatch, path, "text/plain", `{"owner_id":"u1","content":"x"}`); r.status != http.StatusUnsupportedMediaType {
		t.Errorf("a text/plain edit: %d %s, want 415", r.status, r.raw)
	}
	recent := testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/messages/recent")
	if len(recent) != 1 || recent[0].Data.Content != "original" || recent[0].Data.EditedAt != "" {
		t.Errorf("after the bad edits the ring holds %+v, want the original only", recent)
	}

	// Edits count against the author's rate limit, with its send: 429 with Retry-After.
	wantStatus(t, b.do(t, http.MethodPut, "/v1/rate-limit", "application/json", `{"limit":2,"window_seconds":60}`), http.StatusOK)
	wantStatus(t, b.do(t, http.MethodPatch, path, "application/json", `{"owner_id":"u1","content":"second of two"}`), http.StatusOK)
	r = b.do(t, http.MethodPatch, path, "application/json", `{"owner_id":"u1","content":"third"}`)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || r.body["retry_after_ms"] == nil {
		t.Errorf("an edit over the rate limit: %d %v %s, want 429 with Retry-After", r.status, r.header, r.raw)
	}
}
