package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Event is one event of a live tail.
type Event struct {
	// ID is the resume cursor after this event.
	ID string
	// Type is "message", "edit" (Entry is the whole new version: replace, do not patch),
	// "delete" (Entry holds the cache id, and the channel of a public message), "reaction"
	// (Entry holds the cache id, the channel of a public message, and the message's whole
	// Reactions at ReactionsVersion: replace the counts, do not add) or "skipped"
	// (an entry of the stream the server could not read, which the workers dead-letter;
	// Skipped names it, Entry is empty).
	Type  string
	Entry Entry
	// Skipped is the stream entry id of a "skipped" event.
	Skipped string
}

// TailQuery says what to follow.
type TailQuery struct {
	// Timeline is the one timeline followed, unless Channels or All is set.
	Timeline Timeline
	// Channels follows several channels on one connection (1–128); All every channel.
	Channels []string
	All      bool
	// After resumes after this cursor (an Event.ID); "" starts at the live end.
	After string
}

// Tail follows the query's messages live until the context ends or an error that no retry
// cures (then yielded, and the end). A cut connection is resumed after the last event; a
// cursor too old (410) for a one-timeline tail is bridged by history — a new subscription is
// opened first, then history after the last message seen is read, then the subscription's
// events, with what both gave yielded once — so the caller sees every message once. For
// several channels or All a 410 is yielded as ErrCursorTooOld.
func (c *Client) Tail(ctx context.Context, q TailQuery) func(yield func(Event, error) bool) {
	return func(yield func(Event, error) bool) {
		cursor := q.After
		var lastID int64            // the newest message id yielded, for the history bridge
		seen := map[[2]int64]bool{} // (id, version) yielded since the last bridge
		failures := 0
		for ctx.Err() == nil {
			res, err := c.openStream(ctx, q, cursor)
			var e *Error
			switch {
			case errors.As(err, &e) && e.Status == http.StatusGone && len(q.Channels) == 0 && !q.All:
				// Subscribe again from the live end, then read what lies between.
				res, err = c.openStream(ctx, q, "")
				if err == nil {
					for p, herr := range c.History(ctx, q.Timeline, HistoryQuery{Cursor: lastID, Limit: 200}) {
						if herr != nil {
							res.Body.Close()
							yield(Event{}, herr)
							return
						}
						for _, m := range p.Messages {
							if firstSight(seen, &lastID, m) && !yield(Event{Type: "message", Entry: m}, nil) {
								res.Body.Close()
								return
							}
						}
					}
				}
			}
			if err != nil {
				if errors.As(err, &e) && !e.retryable() {
					yield(Event{}, err)
					return
				}
				failures++
				if werr := c.wait(ctx, failures, err); werr != nil || failures >= c.retry.Attempts {
					yield(Event{}, err)
					return
				}
				continue
			}
			failures = 0
			if len(seen) > 100_000 {
				// Dedup matters only where a history bridge met the new subscription: far
				// past it, forget what was seen, so a long tail holds no growing set.
				clear(seen)
			}
			next, stop := c.readEvents(res, yield, seen, &lastID)
			res.Body.Close()
			if stop {
				return
			}
			if next != "" {
				cursor = next
			}
		}
		yield(Event{}, ctx.Err())
	}
}

// openStream opens the tail at cursor; an *Error for an answer other than 200.
func (c *Client) openStream(ctx context.Context, q TailQuery, cursor string) (*http.Response, error) {
	path := q.Timeline.path() + "/stream"
	switch {
	case q.All:
		path = "/v1/channels/stream?all=true"
	case len(q.Channels) > 0:
		v := url.Values{"channel": q.Channels}
		path = "/v1/channels/stream?" + v.Encode()
	}
	h := http.Header{"Accept": {"text/event-stream"}}
	if cursor != "" {
		h.Set("Last-Event-ID", cursor)
	}
	res, err := c.send(ctx, http.MethodGet, path, h, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		answer, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		return nil, answerError(res, answer)
	}
	return res, nil
}

// firstSight records a message version as yielded, and the newest id yielded; false when that
// version was yielded already.
func firstSight(seen map[[2]int64]bool, lastID *int64, m Entry) bool {
	k := [2]int64{m.CacheID, m.Version}
	if seen[k] {
		return false
	}
	seen[k] = true
	*lastID = max(*lastID, m.CacheID)
	return true
}

// readEvents yields the stream's events until it ends; it returns the last cursor and whether
// the caller stopped. An `event: error` (a refusal a retry cures) ends the stream: the loop
// reconnects.
func (c *Client) readEvents(res *http.Response, yield func(Event, error) bool, seen map[[2]int64]bool, lastID *int64) (string, bool) {
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var id, typ, cursor string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if typ != "" && typ != "error" && data.Len() > 0 {
				var ev Event
				ev.ID, ev.Type = id, typ
				if typ == "skipped" {
					// An entry the server could not read: no message, nothing to merge.
					var sk struct {
						StreamID string `json:"stream_id"`
					}
					_ = json.Unmarshal([]byte(data.String()), &sk)
					ev.Skipped = sk.StreamID
					if ev.ID != "" {
						cursor = ev.ID
					}
					if !yield(ev, nil) {
						return cursor, true
					}
				} else if err := json.Unmarshal([]byte(data.String()), &ev.Entry); err == nil {
					if ev.ID != "" {
						cursor = ev.ID
					}
					// A deletion has no version of its own, and a reaction carries the whole
					// counts: neither is a repeat to drop.
					if (typ == "delete" || typ == "reaction" || firstSight(seen, lastID, ev.Entry)) && !yield(ev, nil) {
						return cursor, true
					}
				}
			}
			id, typ = "", ""
			data.Reset()
		case strings.HasPrefix(line, "id:"):
			id = strings.TrimSpace(line[3:])
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(line[6:])
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(line[5:], " "))
		}
	}
	return cursor, false
}
