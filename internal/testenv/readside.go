package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
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
// a client scrolls: the newest page then before= the oldest id of each page, or after=0 then
// after= the newest. It checks each page's order, size and has_more, and returns the messages in
// cache-id order. header holds request header pairs (Authorization).
func ScanHistory(t testing.TB, client *http.Client, base, path string, backward bool, limit int, header ...string) []HistoryMessage {
	t.Helper()
	var all []HistoryMessage
	cursor := ""
	if !backward {
		cursor = "after=0&"
	}
	for range 100_000 {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s%s?%slimit=%d", base, path, cursor, limit), nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("history %s: %v", path, err)
		}
		raw, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("history %s?%s: %d %s", path, cursor, res.StatusCode, raw)
		}
		var p struct {
			Messages []HistoryMessage `json:"messages"`
			HasMore  *bool            `json:"has_more"`
		}
		if err := json.Unmarshal(raw, &p); err != nil || p.HasMore == nil {
			t.Fatalf("history %s: %.200s: %v", path, raw, err)
		}
		if len(p.Messages) > limit || (*p.HasMore && len(p.Messages) < limit) {
			t.Fatalf("history %s: page of %d with has_more %t at limit %d", path, len(p.Messages), *p.HasMore, limit)
		}
		if !slices.IsSortedFunc(p.Messages, func(a, b HistoryMessage) int { return int(a.CacheID - b.CacheID) }) {
			t.Fatalf("history %s: page not oldest first: %.300s", path, raw)
		}
		if backward {
			all = append(p.Messages, all...)
		} else {
			all = append(all, p.Messages...)
		}
		if !*p.HasMore {
			return all
		}
		if backward {
			cursor = fmt.Sprintf("before=%d&", p.Messages[0].CacheID)
		} else {
			cursor = fmt.Sprintf("after=%d&", p.Messages[len(p.Messages)-1].CacheID)
		}
	}
	t.Fatalf("history %s: no end after 100 000 pages", path)
	return nil
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
