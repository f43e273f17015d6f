package api_test

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// channelShapes are channel ids of the shapes chat servers use.
var channelShapes = []string{"3f2b8c1e-9a4d-4f6e-8b2a-1c3d5e7f9a0b", "1234567890", "team-42.general", "Org:Room~1"}

// TestChannels: messages posted to channels (by path, and by batch items naming channel_id) are
// each in their own channel's ring and history only, with channel_id in their data; those of
// /v1/messages are in the default channel, also under /v1/channels/general/; a deletion of a
// message through another channel's path is 404, through its own 204; bad channel ids are 400
// naming the channel and write nothing.
func TestChannels(t *testing.T) {
	eachLayout(t, func(t *testing.T, layout keyspace.Layout) {
		testChannels(t, setupReadLayout(t, layout, testenv.Postgres(t), 50, 10))
	})
}

// eachLayout runs f on each key layout (on one server), in parallel.
func eachLayout(t *testing.T, f func(t *testing.T, layout keyspace.Layout)) {
	t.Parallel()
	for _, layout := range testenv.Layouts(t, "") {
		t.Run(layout.Name(), func(t *testing.T) {
			t.Parallel()
			f(t, layout)
		})
	}
}

func testChannels(t *testing.T, b *readBundle) {
	want := map[string][]int64{}
	post := func(path, channel, content string) int64 {
		t.Helper()
		r := b.post(t, path, fmt.Sprintf(`{"owner_id":"u%d","content":%q}`, len(content)%3, content))
		wantStatus(t, r, http.StatusAccepted)
		id := int64(r.body["cache_id"].(float64))
		want[channel] = append(want[channel], id)
		return id
	}
	for i := range 3 {
		for _, c := range channelShapes {
			post("/v1/channels/"+c+"/messages", c, fmt.Sprintf("%s %d", c, i))
		}
		post("/v1/messages", "general", fmt.Sprintf("default %d", i))
	}
	// A batch mixing channels; a bad channel_id fails its item only.
	batch := b.post(t, "/v1/messages/batch", `{"messages":[`+
		`{"owner_id":"a","content":"b1","channel_id":"team-42.general"},`+
		`{"owner_id":"a","content":"b2"},`+
		`{"owner_id":"a","content":"b3","channel_id":"a/b"},`+
		`{"owner_id":"a","content":"b4","channel_id":"Org:Room~1"}]}`)
	wantStatus(t, batch, http.StatusOK)
	results := batch.body["results"].([]any)
	for i, ch := range []string{"team-42.general", "general", "", "Org:Room~1"} {
		res := results[i].(map[string]any)
		if ch == "" {
			if res["error"] != "invalid" || res["field"] != "channel_id" {
				t.Errorf("item %d with a bad channel_id: %v, want invalid naming channel_id", i, res)
			}
			continue
		}
		want[ch] = append(want[ch], int64(res["cache_id"].(float64)))
	}

	check := func(stage string) {
		t.Helper()
		for ch, ids := range want {
			bases := []string{"/v1/channels/" + ch + "/messages"}
			if ch == "general" {
				bases = append(bases, "/v1/messages")
			}
			for _, base := range bases {
				for _, backward := range []bool{true, false} {
					got := testenv.ScanHistory(t, http.DefaultClient, b.url, base+"/history", backward, 2)
					var gotIDs []int64
					for _, m := range got {
						if m.Data.ChannelID != ch {
							t.Errorf("%s: %s history holds %d of channel %q", stage, base, m.CacheID, m.Data.ChannelID)
						}
						gotIDs = append(gotIDs, m.CacheID)
					}
					if !slices.Equal(gotIDs, ids) {
						t.Errorf("%s: %s history (backward %t): %v, want %v", stage, base, backward, gotIDs, ids)
					}
				}
				recent := b.do(t, http.MethodGet, base+"/recent", "", "")
				wantStatus(t, recent, http.StatusOK)
				var ringIDs []int64
				for _, m := range recent.body["messages"].([]any) {
					mm := m.(map[string]any)
					ringIDs = append(ringIDs, int64(mm["cache_id"].(float64)))
					if got := mm["data"].(map[string]any)["channel_id"]; got != ch {
						t.Errorf("%s: %s ring entry of channel %v", stage, base, got)
					}
				}
				if !slices.Equal(ringIDs, ids) {
					t.Errorf("%s: %s ring: %v, want %v", stage, base, ringIDs, ids)
				}
			}
		}
	}
	check("in the backlog")

	// A deletion through another channel is not found; through its own it is done.
	victim := want["Org:Room~1"][0]
	if r := b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/team-42.general/messages/%d", victim), "", ""); r.status != http.StatusNotFound {
		t.Errorf("deleting %d through another channel: %d %s, want 404", victim, r.status, r.raw)
	}
	wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/Org:Room~1/messages/%d", victim), "", ""), http.StatusNoContent)
	want["Org:Room~1"] = want["Org:Room~1"][1:]
	check("after a deletion")

	total := 0
	for _, ids := range want {
		total += len(ids)
	}
	b.flushAll(t, total)
	check("in PostgreSQL")
	// Deleting a flushed message checks its channel in PostgreSQL.
	victim = want["1234567890"][0]
	if r := b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/general/messages/%d", victim), "", ""); r.status != http.StatusNotFound {
		t.Errorf("deleting flushed %d through the default channel: %d %s, want 404", victim, r.status, r.raw)
	}
	wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/1234567890/messages/%d", victim), "", ""), http.StatusNoContent)

	// Bad channel ids: 400 naming channel, nothing written.
	stream := b.layout.Route(message.Public, "a", "", "c").Stream
	before, _ := testenv.Do(t, b.client, "XLEN", stream).AsInt64()
	for _, bad := range []string{"", strings.Repeat("c", 129), "%7B", "a%2Fb", "a%00b", "a%20b", "caf%C3%A9", "a%7Bb%7D"} {
		for _, req := range []struct{ method, path string }{
			{http.MethodPost, "/v1/channels/" + bad + "/messages"},
			{http.MethodGet, "/v1/channels/" + bad + "/messages/recent"},
			{http.MethodGet, "/v1/channels/" + bad + "/messages/history"},
			{http.MethodDelete, "/v1/channels/" + bad + "/messages/1"},
		} {
			r := b.do(t, req.method, req.path, "application/json", `{"owner_id":"a","content":"x"}`)
			if r.status != http.StatusBadRequest || r.body["field"] != "channel" {
				t.Errorf("%s %s: %d %s, want 400 naming channel", req.method, req.path, r.status, r.raw)
			}
		}
	}
	if after, _ := testenv.Do(t, b.client, "XLEN", stream).AsInt64(); after != before {
		t.Errorf("the bad channel ids wrote %d entries", after-before)
	}
}

// TestChannelStreams: one connection following three channels, cut after some events and
// resumed with Last-Event-ID, gets exactly those channels' messages and deletions once, in
// order; a firehose connection (?all=true) gets every channel's; bad selections are 400.
func TestChannelStreams(t *testing.T) {
	eachLayout(t, func(t *testing.T, layout keyspace.Layout) {
		b := setupReadLayout(t, layout, "", 50, 10)
		followed := channelShapes[:3]
		url := b.url + "/v1/channels/stream?channel=" + strings.Join(followed, "&channel=")
		s, code := testenv.OpenSSE(t, http.DefaultClient, url, "")
		fire, fireCode := testenv.OpenSSE(t, http.DefaultClient, b.url+"/v1/channels/stream?all=true", "")
		if code != http.StatusOK || fireCode != http.StatusOK {
			t.Fatalf("opening the streams: %d, %d", code, fireCode)
		}
		var want, wantAll []int64 // cache ids, negative for deletions
		chOf := map[int64]string{}
		// perChannel splits events by channel: each channel's order is kept exactly, not the
		// order across channels (partitions are read one after another when catching up).
		perChannel := func(ids []int64) map[string][]int64 {
			out := map[string][]int64{}
			for _, id := range ids {
				out[chOf[max(id, -id)]] = append(out[chOf[max(id, -id)]], id)
			}
			return out
		}
		send := func(n int) {
			for i := range n {
				ch := channelShapes[i%len(channelShapes)]
				r := b.post(t, "/v1/channels/"+ch+"/messages", fmt.Sprintf(`{"owner_id":"u%d","content":"m%d"}`, i%5, i))
				wantStatus(t, r, http.StatusAccepted)
				id := int64(r.body["cache_id"].(float64))
				chOf[id] = ch
				wantAll = append(wantAll, id)
				if slices.Contains(followed, ch) {
					want = append(want, id)
				}
				if i%4 == 1 { // delete some, in their channel
					wantStatus(t, b.do(t, http.MethodDelete, fmt.Sprintf("/v1/channels/%s/messages/%d", ch, id), "", ""), http.StatusNoContent)
					wantAll = append(wantAll, -id)
					if slices.Contains(followed, ch) {
						want = append(want, -id)
					}
				}
			}
		}
		send(12)
		var got []int64
		var last string
		for range want {
			ev, ok := s.Next()
			if !ok {
				t.Fatalf("the stream ended after %d of %d events", len(got), len(want))
			}
			id, m := eventID(t, ev)
			if ch := cmp.Or(m.Data.ChannelID, m.ChannelID); !slices.Contains(followed, ch) {
				t.Errorf("event %d of channel %q", id, ch)
			}
			got, last = append(got, id), ev.ID
		}
		s.Close()
		sent := len(want)
		send(12) // while cut off
		r, _ := testenv.OpenSSE(t, http.DefaultClient, url, last)
		more, _ := nextEvents(t, r, len(want)-sent)
		r.Close()
		got = append(got, more...)
		if g, w := perChannel(got), perChannel(want); len(got) != len(want) || !maps.EqualFunc(g, w, slices.Equal) {
			t.Errorf("followed channels, cut and resumed: %v, want %v", g, w)
		}
		all, _ := nextEvents(t, fire, len(wantAll))
		fire.Close()
		if g, w := perChannel(all), perChannel(wantAll); !maps.EqualFunc(g, w, slices.Equal) {
			t.Errorf("the firehose: %v, want %v", g, w)
		}
		for _, q := range []string{"", "?all=1", "?all=true&all=true", "?all=true&channel=a", "?channel=a%2Fb", "?channel=" + strings.Repeat("x&channel=", 128) + "x"} {
			if r := b.do(t, http.MethodGet, "/v1/channels/stream"+q, "", ""); r.status != http.StatusBadRequest {
				t.Errorf("stream%s: %d %s, want 400", q, r.status, r.raw)
			}
		}
	})
}

// TestHistoryWithEntriesFromBeforeTheIndexes: a stream holding entries written before the
// backlog indexes existed (an ingest from before channels, or the list-based cache's mirror)
// is scanned for them; history holds those and the indexed ones after them, once, in order, in
// either direction, until the old ones are flushed.
func TestHistoryWithEntriesFromBeforeTheIndexes(t *testing.T) {
	t.Parallel()
	b := setupRead(t, testenv.Postgres(t), 50, 10)
	stream := b.keys.Stream(message.Public)
	var want []int64
	for id := int64(1); id <= 3; id++ { // as an ingest from before channels wrote them
		payload := fmt.Sprintf(`{"cache_id":%d,"data":{"owner_id":"old","username":"","content":"old %d","created_at":"2026-11-25T10:00:00Z"}}`, id, id)
		testenv.Do(t, b.client, "XADD", stream, "*", "cache_id", strconv.FormatInt(id, 10), "kind", "message", "payload", payload)
		testenv.Do(t, b.client, "SET", "cache_message_id", strconv.FormatInt(id, 10))
		want = append(want, id)
	}
	for i := range 3 {
		r := b.post(t, "/v1/messages", fmt.Sprintf(`{"owner_id":"new","content":"new %d"}`, i))
		wantStatus(t, r, http.StatusAccepted)
		want = append(want, int64(r.body["cache_id"].(float64)))
	}
	testenv.Do(t, b.client, "DEL", "recent_messages") // the ring alone would answer
	for _, backward := range []bool{true, false} {
		var got []int64
		for _, m := range testenv.ScanHistory(t, http.DefaultClient, b.url, "/v1/messages/history", backward, 2) {
			got = append(got, m.CacheID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("backward %t: %v, want %v", backward, got, want)
		}
	}
}
