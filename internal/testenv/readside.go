package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	chatpipe "github.com/chatpipe/chatpipe/client"
)

// HistoryMessage is one message of a history page or a tail event.
type HistoryMessage struct {
	CacheID int64 `json:"cache_id"`
	Version int64 `json:"version"`
	// ChannelID is a public deletion event's channel.
	ChannelID string `json:"channel_id"`
	Data      struct {
		OwnerID     string `json:"owner_id"`
		RecipientID string `json:"recipient_id"`
		ChannelID   string `json:"channel_id"`
		Content     string `json:"content"`
		CreatedAt   string `json:"created_at"`
		EditedAt    string `json:"edited_at"`
	} `json:"data"`
	// Reactions are the message's counts (a reaction event's too), ReactionsVersion their
	// version.
	Reactions []struct {
		Emoji string `json:"emoji"`
		Count int64  `json:"count"`
		Me    bool   `json:"me"`
	} `json:"reactions"`
	ReactionsVersion int64 `json:"reactions_version"`
}

// Counts writes the message's reactions as emoji=count pairs in order, "*" after the viewer's.
func (m HistoryMessage) Counts() string {
	var b strings.Builder
	for i, r := range m.Reactions {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", r.Emoji, r.Count)
		if r.Me {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// ScanRecent reads a recent endpoint (url: the whole ring) and returns its messages.
func ScanRecent(t testing.TB, client *http.Client, url string) []HistoryMessage {
	t.Helper()
	res, err := client.Get(url)
	if err != nil {
		t.Fatalf("recent %s: %v", url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var p struct {
		Messages []HistoryMessage `json:"messages"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(raw, &p) != nil {
		t.Fatalf("recent %s: %d %.200s", url, res.StatusCode, raw)
	}
	return p.Messages
}

// ScanHistory pages through a history endpoint (base+path) in one direction with limit, the way
// a client scrolls — through the Go client (package client), so that every history check
// exercises it: the newest page then before= the oldest id of each page, or after=0 then after=
// the newest. It checks each page's order, size and has_more, and returns the messages in
// cache-id order. header holds request header pairs (only Authorization: Bearer).
func ScanHistory(t testing.TB, hc *http.Client, base, path string, backward bool, limit int, header ...string) []HistoryMessage {
	t.Helper()
	tl, ok := historyTimeline(path)
	if !ok {
		t.Fatalf("history %s: not a history path", path)
	}
	opts := []chatpipe.Option{chatpipe.WithHTTPClient(hc), chatpipe.WithRetry(chatpipe.RetryPolicy{Attempts: 3, Min: 100 * time.Millisecond, Max: 500 * time.Millisecond})}
	for i := 0; i+1 < len(header); i += 2 {
		token, bearer := strings.CutPrefix(header[i+1], "Bearer ")
		if header[i] != "Authorization" || !bearer {
			t.Fatalf("history %s: header %s: only Authorization: Bearer is sent", path, header[i])
		}
		opts = append(opts, chatpipe.WithToken(token))
	}
	c, err := chatpipe.New(base, opts...)
	if err != nil {
		t.Fatal(err)
	}
	var all []HistoryMessage
	pages := 0
	for p, err := range c.History(context.Background(), tl, chatpipe.HistoryQuery{Backward: backward, Limit: limit}) {
		if err != nil {
			t.Fatalf("history %s, page %d: %v", path, pages+1, err)
		}
		if pages++; pages > 100_000 {
			t.Fatalf("history %s: no end after 100 000 pages", path)
		}
		if len(p.Messages) > limit || (p.HasMore && len(p.Messages) < limit) {
			t.Fatalf("history %s: page of %d with has_more %t at limit %d", path, len(p.Messages), p.HasMore, limit)
		}
		var msgs []HistoryMessage
		raw, _ := json.Marshal(p.Messages)
		if err := json.Unmarshal(raw, &msgs); err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(msgs, func(a, b HistoryMessage) int { return int(a.CacheID - b.CacheID) }) {
			t.Fatalf("history %s: page not oldest first: %.300s", path, raw)
		}
		if backward {
			all = append(msgs, all...)
		} else {
			all = append(all, msgs...)
		}
	}
	return all
}

// historyTimeline is the timeline of a history path.
func historyTimeline(path string) (chatpipe.Timeline, bool) {
	rest, ok := strings.CutSuffix(path, "/history")
	switch {
	case !ok:
		return chatpipe.Timeline{}, false
	case rest == "/v1/messages":
		return chatpipe.Timeline{}, true
	}
	if ch, ok := strings.CutPrefix(rest, "/v1/channels/"); ok {
		if ch, ok = strings.CutSuffix(ch, "/messages"); ok {
			ch, err := url.PathUnescape(ch)
			return chatpipe.Timeline{Channel: ch}, err == nil
		}
	}
	if u, ok := strings.CutPrefix(rest, "/v1/users/"); ok {
		if u, ok = strings.CutSuffix(u, "/private-messages"); ok {
			u, err := url.PathUnescape(u)
			return chatpipe.Timeline{User: u}, err == nil
		}
	}
	return chatpipe.Timeline{}, false
}

// SSE reads the events of a live-tail response.
type SSE struct {
	res *http.Response
	sc  *bufio.Scanner
}

// SSEEvent is one Server-Sent Event.
type SSEEvent struct{ ID, Type, Data string }

// OpenSSE opens a live-tail stream, resuming after lastID when it is set. It returns nil and
// the status when the answer is not 200.
func OpenSSE(t testing.TB, client *http.Client, url, lastID string) (*SSE, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("opening %s: %v", url, err)
	}
	if res.StatusCode != http.StatusOK {
		res.Body.Close()
		return nil, res.StatusCode
	}
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("%s: Content-Type %q", url, ct)
	}
	return &SSE{res: res, sc: bufio.NewScanner(res.Body)}, res.StatusCode
}

// Next returns the next event, skipping comments and the retry field; false at the stream's end.
func (s *SSE) Next() (SSEEvent, bool) {
	var ev SSEEvent
	for s.sc.Scan() {
		line := s.sc.Text()
		switch {
		case line == "":
			if ev.Type != "" {
				return ev, true
			}
		case strings.HasPrefix(line, "id: "):
			ev.ID = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.Data = line[6:]
		}
	}
	return ev, false
}

// Close ends the stream.
func (s *SSE) Close() { s.res.Body.Close() }
