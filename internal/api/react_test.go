package api_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestReactions, in both layouts: toggles answer the whole counts in first-added order, a
// repeat is 200 changed:false; history, recent and the tail carry the counts (the viewer's
// marked), while the message waits in the backlog, once it is in PostgreSQL, and once its
// hot reactions left Valkey (then read back from PostgreSQL); who reacted pages oldest first;
// the refusals answer their status and code and write nothing.
func TestReactions(t *testing.T) {
	eachLayout(t, func(t *testing.T, layout keyspace.Layout) {
		b := setupReadLayout(t, layout, testenv.Postgres(t), 50, 10)
		const ch = "team-7"
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
		a := post("/v1/channels/"+ch+"/messages", `{"owner_id":"u1","content":"react to me"}`)
		dm := post("/v1/private-messages", `{"owner_id":"u1","recipient_id":"u2","content":"psst"}`)
		aPath := fmt.Sprintf("/v1/channels/%s/messages/%d", ch, a)
		dmPath := fmt.Sprintf("/v1/private-messages/%d", dm)
		toggle := func(method, path, emoji, user string, wantChanged bool, want string) {
			t.Helper()
			r := b.do(t, method, path+"/reactions/"+url.PathEscape(emoji)+"/"+user, "", "")
			wantStatus(t, r, http.StatusOK)
			if got := fmt.Sprint(r.body["reactions"]); got != want || r.body["changed"] != wantChanged || r.body["cache_id"] == nil || r.body["reactions_version"] == nil {
				t.Fatalf("%s %s %s by %s: %s, want %s changed %t", method, path, emoji, user, r.raw, want, wantChanged)
			}
		}
		toggle(http.MethodPut, aPath, "👍", "u1", true, "[map[count:1 emoji:👍]]")
		toggle(http.MethodPut, aPath, "👍", "u1", false, "[map[count:1 emoji:👍]]")
		toggle(http.MethodPut, aPath, "👍", "u2", true, "[map[count:2 emoji:👍]]")
		toggle(http.MethodPut, aPath, ":tada:", "u3", true, "[map[count:2 emoji:👍] map[count:1 emoji::tada:]]")
		toggle(http.MethodDelete, aPath, "👍", "u1", true, "[map[count:1 emoji:👍] map[count:1 emoji::tada:]]")
		toggle(http.MethodDelete, aPath, "👍", "u1", false, "[map[count:1 emoji:👍] map[count:1 emoji::tada:]]")
		toggle(http.MethodPut, dmPath, "❤️", "u2", true, "[map[count:1 emoji:❤️]]")

		check := func(stage, pubWant, dmWant, dmMine string) {
			t.Helper()
			for _, c := range []struct {
				what string
				msgs []testenv.HistoryMessage
				id   int64
				want string
			}{
				{"channel history", testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/channels/"+ch+"/messages/history", true, 10), a, pubWant},
				{"channel ring", testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/channels/"+ch+"/messages/recent"), a, pubWant},
				{"channel history as u2", testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/channels/"+ch+"/messages/history?viewer=u2"), a, strings.Replace(pubWant, "👍=1", "👍=1*", 1)},
				{"channel ring as u2", testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/channels/"+ch+"/messages/recent?viewer=u2"), a, strings.Replace(pubWant, "👍=1", "👍=1*", 1)},
				{"private history of u1", testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/users/u1/private-messages/history", false, 10), dm, dmWant},
				{"private ring of u2 as u2", testenv.ScanRecent(t, http.DefaultClient, b.url+"/v1/users/u2/private-messages/recent?viewer=u2"), dm, dmMine},
			} {
				got := "absent"
				for _, m := range c.msgs {
					if m.CacheID == c.id {
						got = m.Counts()
					}
				}
				if got != c.want {
					t.Errorf("%s, %s: message %d has %q, want %q", stage, c.what, c.id, got, c.want)
				}
			}
		}
		check("in the backlog", "👍=1 :tada:=1", "❤️=1", "❤️=1*")
		b.flushAll(t, 2)
		check("in PostgreSQL", "👍=1 :tada:=1", "❤️=1", "❤️=1*")

		// The hot reactions leave Valkey (RING_IDLE_TTL): the next toggle reads PostgreSQL's.
		ar, _ := layout.RouteOf(message.Public, ch, a)
		dr, _ := layout.RouteOf(message.Private, "", dm)
		testenv.Do(t, b.client, "DEL", keyspace.Reactions(ar.Stream, a), keyspace.Reactions(dr.Stream, dm))
		toggle(http.MethodPut, aPath, "👍", "u2", false, "[map[count:1 emoji:👍] map[count:1 emoji::tada:]]")
		toggle(http.MethodPut, aPath, "🔥", "u4", true, "[map[count:1 emoji:👍] map[count:1 emoji::tada:] map[count:1 emoji:🔥]]")
		toggle(http.MethodDelete, dmPath, "❤️", "u2", true, "[]")
		check("reacted again from PostgreSQL", "👍=1 :tada:=1 🔥=1", "", "")
		// Flushed, and out of Valkey again: history's rows and the rings' entries take their
		// counts from PostgreSQL.
		b.flushUntil(t, "the counts in postgres", "SELECT count(*) FROM chat_message_reaction_counts WHERE reactions::text LIKE '%🔥%'", 1)
		testenv.Do(t, b.client, "DEL", keyspace.Reactions(ar.Stream, a), keyspace.Reactions(dr.Stream, dm))
		check("out of Valkey", "👍=1 :tada:=1 🔥=1", "", "")

		// Who reacted, oldest first, a page at a time.
		toggle(http.MethodPut, aPath, "🔥", "u5", true, "[map[count:1 emoji:👍] map[count:1 emoji::tada:] map[count:2 emoji:🔥]]")
		toggle(http.MethodPut, aPath, "🔥", "u6", true, "[map[count:1 emoji:👍] map[count:1 emoji::tada:] map[count:3 emoji:🔥]]")
		r := b.do(t, http.MethodGet, aPath+"/reactions/"+url.PathEscape("🔥")+"?limit=2", "", "")
		wantStatus(t, r, http.StatusOK)
		if fmt.Sprint(r.body["users"]) != "[u4 u5]" || r.body["next"] == nil {
			t.Fatalf("the first page of 🔥: %s", r.raw)
		}
		r = b.do(t, http.MethodGet, fmt.Sprintf("%s/reactions/%s?limit=2&after=%d", aPath, url.PathEscape("🔥"), int64(r.body["next"].(float64))), "", "")
		if fmt.Sprint(r.body["users"]) != "[u6]" || r.body["next"] != nil {
			t.Fatalf("the second page of 🔥: %s", r.raw)
		}

		// The tail: each accepted toggle once, with the whole counts, in order.
		var got []string
		for len(got) < 7 {
			ev, ok := tail.Next()
			if !ok {
				t.Fatalf("the tail ended after %v", got)
			}
			_, m := eventID(t, ev)
			if ev.Type == "reaction" {
				got = append(got, m.Counts())
			}
		}
		want := []string{"👍=1", "👍=2", "👍=2 :tada:=1", "👍=1 :tada:=1", "👍=1 :tada:=1 🔥=1", "👍=1 :tada:=1 🔥=2", "👍=1 :tada:=1 🔥=3"}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("the tail's reactions: %v, want %v", got, want)
		}
	})
}

// TestReactionBadInput: each refusal answers its status and code, names its field, and
// writes nothing.
func TestReactionBadInput(t *testing.T) {
	t.Parallel()
	b := setupRead(t, testenv.Postgres(t), 50, 10)
	r := b.post(t, "/v1/channels/room/messages", `{"owner_id":"u1","content":"hi"}`)
	wantStatus(t, r, http.StatusAccepted)
	id := int64(r.body["cache_id"].(float64))
	r = b.post(t, "/v1/private-messages", `{"owner_id":"u1","recipient_id":"u2","content":"psst"}`)
	wantStatus(t, r, http.StatusAccepted)
	dm := int64(r.body["cache_id"].(float64))
	gone := int64(b.post(t, "/v1/channels/room/messages", `{"owner_id":"u1","content":"bye"}`).body["cache_id"].(float64))
	wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/room/messages/%d", gone), "", ""), http.StatusNoContent)
	base := fmt.Sprintf("/v1/channels/room/messages/%d/reactions", id)
	before := b.streamLen(t, message.Public)
	for _, c := range []struct {
		method, path string
		status       int
		code, field  string
	}{
		{http.MethodPut, base + "/%20/u1", http.StatusBadRequest, "invalid", "emoji"},
		{http.MethodPut, base + "/a%00b/u1", http.StatusBadRequest, "invalid", "emoji"},
		{http.MethodPut, base + "/%FF/u1", http.StatusBadRequest, "invalid", "emoji"},
		{http.MethodPut, base + "/" + strings.Repeat("x", 65) + "/u1", http.StatusBadRequest, "invalid", "emoji"},
		{http.MethodPut, base + "/%F0%9F%91%8D%0A/u1", http.StatusBadRequest, "invalid", "emoji"},
		{http.MethodPut, base + "/ok/u%201", http.StatusBadRequest, "invalid", "user_id"},
		{http.MethodPut, base + "/ok/" + strings.Repeat("u", 129), http.StatusBadRequest, "invalid", "user_id"},
		{http.MethodPut, "/v1/channels/room/messages/abc/reactions/ok/u1", http.StatusBadRequest, "invalid", "cache_id"},
		{http.MethodPut, "/v1/channels/room/messages/0/reactions/ok/u1", http.StatusBadRequest, "invalid", "cache_id"},
		{http.MethodPut, fmt.Sprintf("/v1/channels/a%%2Fb/messages/%d/reactions/ok/u1", id), http.StatusBadRequest, "invalid", "channel"},
		{http.MethodGet, base + "/ok?limit=0", http.StatusBadRequest, "invalid", "limit"},
		{http.MethodGet, base + "/ok?limit=101", http.StatusBadRequest, "invalid", "limit"},
		{http.MethodGet, base + "/ok?after=-1", http.StatusBadRequest, "invalid", "after"},
		{http.MethodGet, base + "/ok?after=1&after=2", http.StatusBadRequest, "invalid", "after"},
		{http.MethodGet, "/v1/channels/room/messages/recent?viewer=a%20b", http.StatusBadRequest, "invalid", "viewer"},
		{http.MethodPost, base + "/ok/u1", http.StatusMethodNotAllowed, "method_not_allowed", ""},
		{http.MethodPut, fmt.Sprintf("/v1/channels/other/messages/%d/reactions/ok/u1", id), http.StatusNotFound, "not_found", ""},
		{http.MethodPut, fmt.Sprintf("/v1/channels/room/messages/%d/reactions/ok/u1", id+1_000_000), http.StatusNotFound, "not_found", ""},
		{http.MethodPut, fmt.Sprintf("/v1/channels/room/messages/%d/reactions/ok/u1", gone), http.StatusNotFound, "not_found", ""},
		{http.MethodPut, fmt.Sprintf("/v1/private-messages/%d/reactions/ok/u3", dm), http.StatusForbidden, "not_participant", ""},
	} {
		r := b.do(t, c.method, c.path, "", "")
		if r.status != c.status || r.body["error"] != c.code || (c.field != "" && r.body["field"] != c.field) {
			t.Errorf("%s %s: %d %s, want %d %s naming %q", c.method, c.path, r.status, r.raw, c.status, c.code, c.field)
		}
	}
	if after := b.streamLen(t, message.Public); after != before {
		t.Errorf("the refusals wrote %d entries", after-before)
	}

	// REACTIONS_MAX_DISTINCT (20): the 21st distinct emoji is 409; one it has is fine.
	for i := range 20 {
		wantStatus(t, b.do(t, http.MethodPut, fmt.Sprintf("%s/e%d/u1", base, i), "", ""), http.StatusOK)
	}
	if r := b.do(t, http.MethodPut, base+"/e20/u2", "", ""); r.status != http.StatusConflict || r.body["error"] != "too_many_reactions" {
		t.Errorf("a 21st distinct emoji: %d %s, want 409 too_many_reactions", r.status, r.raw)
	}
	wantStatus(t, b.do(t, http.MethodPut, base+"/e3/u2", "", ""), http.StatusOK)

	// Reactions count against the user's rate limit: 429 with Retry-After.
	wantStatus(t, b.do(t, http.MethodPut, "/v1/rate-limit", "application/json", `{"limit":1,"window_seconds":60}`), http.StatusOK)
	wantStatus(t, b.do(t, http.MethodPut, base+"/e4/u9", "", ""), http.StatusOK)
	r = b.do(t, http.MethodPut, base+"/e5/u9", "", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("a reaction over the rate limit: %d %v %s, want 429 with Retry-After", r.status, r.header, r.raw)
	}
	if r := b.do(t, http.MethodPut, base+"/e4/u9", "", ""); r.status != http.StatusOK || r.body["changed"] != false {
		t.Errorf("a repeat over the rate limit writes nothing and is answered: %d %s", r.status, r.raw)
	}
}
