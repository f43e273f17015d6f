package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/tail"
)

// History page sizes (docs/readpath.md: most chat APIs reject a limit out of range rather than clamp
// it, since a clamped page cannot be told from the end).
const (
	defaultHistoryLimit = 50
	maxHistoryLimit     = 200
)

// timeline is the timeline the request's path names, parsed here once, by its route's
// placement: a channel's under /v1/channels/{channel}/, a user's private messages under
// /v1/users/{id}/, else the default channel's.
func (s *Server) timeline(r *http.Request) (message.Timeline, error) {
	switch p := s.placements[r.Pattern]; p {
	case inChannel:
		// PathValue is unescaped: a %2F arrives as "/" and is refused with the rest.
		c := r.PathValue("channel")
		if err := message.ValidateChannel("channel", c); err != nil {
			return message.Timeline{}, err
		}
		return message.ChannelTimeline(c), nil
	case ofUser:
		id := r.PathValue("id")
		if err := message.ValidateID("id", id); err != nil {
			return message.Timeline{}, err
		}
		return message.PrivateTimeline(id), nil
	case inDefaultChannel:
		return message.ChannelTimeline(s.cfg.DefaultChannel), nil
	case nowhere, inPrivate, everyChannel:
		return message.Timeline{}, fmt.Errorf("the route %s names no one timeline (placement %d)", r.Pattern, p)
	}
	return message.Timeline{}, fmt.Errorf("the route %s has no placement", r.Pattern)
}

// historyQuery reads before, after and limit: each at most once, cursors non-negative integers
// (before positive), not both.
func historyQuery(r *http.Request) (history.Query, error) {
	q := history.Query{Before: true, Limit: defaultHistoryLimit}
	vals := r.URL.Query()
	one := func(name string) (string, bool, error) { return queryOne(vals, name) }
	before, hasBefore, err := one("before")
	if err != nil {
		return q, err
	}
	after, hasAfter, err := one("after")
	if err != nil {
		return q, err
	}
	limit, hasLimit, err := one("limit")
	if err != nil {
		return q, err
	}
	switch {
	case hasBefore && hasAfter:
		return q, &apiError{code: codeInvalid, field: "after", detail: "before and after: give one cursor, not both"}
	case hasBefore:
		id, ok := parseCursor(before)
		if !ok || id < 1 {
			return q, &apiError{code: codeInvalid, field: "before", detail: "before: must be a positive integer (a cache id)"}
		}
		q.Cursor = id
	case hasAfter:
		id, ok := parseCursor(after)
		if !ok {
			return q, &apiError{code: codeInvalid, field: "after", detail: "after: must be a non-negative integer (a cache id; 0 reads from the oldest)"}
		}
		q.Before, q.Cursor = false, id
	}
	if hasLimit {
		n, ok := parseCursor(limit)
		if !ok || n < 1 || n > maxHistoryLimit {
			return q, &apiError{code: codeInvalid, field: "limit", detail: fmt.Sprintf("limit: must be an integer in 1..%d", maxHistoryLimit)}
		}
		q.Limit = int(n)
	}
	return q, nil
}

// queryOne reads a query parameter given at most once: its value and whether it was given.
func queryOne(vals url.Values, name string) (string, bool, error) {
	v, ok := vals[name]
	switch {
	case !ok:
		return "", false, nil
	case len(v) != 1:
		return "", false, &apiError{code: codeInvalid, field: name, detail: name + ": given more than once"}
	}
	return v[0], true, nil
}

// queryInt reads an integer query parameter given at most once, written plainly (parseCursor),
// in lo..hi; detail says what it must be.
func queryInt(vals url.Values, name string, lo, hi int64, detail string) (n int64, given bool, err error) {
	v, given, err := queryOne(vals, name)
	if err != nil || !given {
		return 0, given, err
	}
	n, ok := parseCursor(v)
	if !ok || n < lo || n > hi {
		return 0, true, &apiError{code: codeInvalid, field: name, detail: name + ": " + detail}
	}
	return n, true, nil
}

// parseCursor reads a decimal integer written plainly: digits only, no sign, no spaces, no
// leading zero.
func parseCursor(v string) (int64, bool) {
	if v == "" || len(v) > 19 || (len(v) > 1 && v[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// getHistory answers a page of the path's timeline: {"messages":[...],"has_more":bool}, oldest
// first.
func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) error {
	tl, err := s.timeline(r)
	if err != nil {
		return err
	}
	q, err := historyQuery(r)
	if err != nil {
		return err
	}
	who, err := viewer(r)
	if err != nil {
		return err
	}
	if s.cfg.History == nil || !s.cfg.History.Available() {
		return &apiError{code: codeHistoryUnavailable, detail: "history needs PostgreSQL: start ingest with DATABASE_URL (a role with SELECT on the message tables)"}
	}
	q.Timeline = tl
	start := time.Now()
	p, err := s.cfg.History.Page(r.Context(), q)
	s.m.script.WithLabelValues("history").Observe(time.Since(start).Seconds())
	if err != nil {
		switch {
		case errors.Is(err, history.ErrDatabase):
			s.log.WarnContext(r.Context(), "reading history from postgres failed", "err", err)
		default:
			s.valkeyFailed(r, "history", err)
		}
		return err
	}
	msgs, err := s.decorate(r, tl, p.Messages, who)
	if err != nil {
		return err
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuf(buf)
	buf.WriteString(`{"messages":[`)
	for i, m := range msgs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(m)
	}
	buf.WriteString(`],"has_more":`)
	buf.WriteString(strconv.FormatBool(p.HasMore))
	buf.WriteString("}\n")
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	_, _ = w.Write(buf.Bytes())
	return nil
}

// deletePrivate deletes a private message. Its users, looked up in the flush stream and then in
// PostgreSQL, have it removed from their rings at once; when neither knows them (no
// DATABASE_URL, and the message already flushed), the workers remove it once PostgreSQL names
// them. Either way the deletion holds in whichever order it meets the message's write.
func (s *Server) deletePrivate(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var owner, recipient string
	if s.cfg.History != nil {
		owner, recipient = s.cfg.History.Participants(r.Context(), id)
	}
	start := time.Now()
	err = s.cfg.Store.Delete(r.Context(), message.Ref{Kind: message.Private, CacheID: id, OwnerID: owner, RecipientID: recipient})
	s.m.script.WithLabelValues("delete").Observe(time.Since(start).Seconds())
	if err != nil {
		return s.deleteFailed(r, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// pathID reads the {cache_id} of a path.
func pathID(r *http.Request) (int64, error) {
	id, ok := parseCursor(r.PathValue("cache_id"))
	if !ok || id < 1 {
		return 0, &apiError{code: codeInvalid, field: "cache_id", detail: "cache_id: must be a positive integer"}
	}
	return id, nil
}

// maxStreamChannels bounds the channels of one connection (Centrifugo's default too).
const maxStreamChannels = 128

// selection is what a stream path follows: the path's timeline, or for /v1/channels/stream the
// channels of ?channel= (1–128) or every channel (?all=true).
func (s *Server) selection(r *http.Request) (tail.Selection, error) {
	if s.placements[r.Pattern] != everyChannel {
		tl, err := s.timeline(r)
		return tail.Follow(tl), err
	}
	q := r.URL.Query()
	channels, all := q["channel"], q["all"]
	switch {
	case len(all) > 1 || (len(all) == 1 && all[0] != "true"):
		return tail.Selection{}, &apiError{code: codeInvalid, field: "all", detail: "all: must be true, once"}
	case len(all) == 1 && len(channels) > 0:
		return tail.Selection{}, &apiError{code: codeInvalid, field: "all", detail: "all=true and channel: give one or the other"}
	case len(all) == 1:
		return tail.Selection{Kind: message.Public}, nil
	case len(channels) == 0:
		return tail.Selection{}, &apiError{code: codeInvalid, field: "channel", detail: "channel: give 1 to 128 (channel=A&channel=B), or all=true"}
	case len(channels) > maxStreamChannels:
		return tail.Selection{}, &apiError{code: codeInvalid, field: "channel", detail: fmt.Sprintf("channel: at most %d on one connection", maxStreamChannels)}
	}
	sel := tail.Selection{Kind: message.Public, Channels: make(map[string]bool, len(channels))}
	for _, c := range channels {
		if err := message.ValidateChannel("channel", c); err != nil {
			return tail.Selection{}, err
		}
		sel.Channels[c] = true
	}
	return sel, nil
}

// getStream serves the live tail as Server-Sent Events: an event per accepted message and per
// deletion, each with the id that resumes right after it, and a comment every TailHeartbeat.
// Last-Event-ID (sent by EventSource on reconnection) wins over ?after= (the URL it keeps).
func (s *Server) getStream(w http.ResponseWriter, r *http.Request) error {
	sel, err := s.selection(r)
	if err != nil {
		return err
	}
	if s.cfg.Tail == nil {
		return &apiError{code: codeUnavailable, retryAfter: time.Second, detail: "the live tail is not running"}
	}
	field, cursor := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if cursor == "" {
		vals := r.URL.Query()["after"]
		if len(vals) > 1 {
			return &apiError{code: codeInvalid, field: "after", detail: "after: given more than once"}
		}
		if len(vals) == 1 {
			field, cursor = "after", vals[0]
			if cursor == "" {
				return &apiError{code: codeInvalid, field: "after", detail: "after: empty; give the id of the last event received, or leave after out"}
			}
		}
	}
	sub, err := s.cfg.Tail.Subscribe(r.Context(), sel, cursor)
	switch {
	case errors.Is(err, tail.ErrBadCursor):
		return &apiError{code: codeInvalid, field: field, detail: field + ": not an event id of this stream"}
	case errors.Is(err, tail.ErrTooOld):
		return &apiError{code: codeCursorTooOld, detail: "entries after this event id were already trimmed; read history after your last cache id, then subscribe without an id"}
	case errors.Is(err, tail.ErrFull):
		return s.refuseStream(w, r, &apiError{code: codeUnavailable, retryAfter: 5 * time.Second, detail: "this replica serves its most live-tail subscribers (INGEST_TAIL_MAX); retry later"})
	case errors.Is(err, tail.ErrClosed):
		return s.refuseStream(w, r, &apiError{code: codeUnavailable, retryAfter: time.Second, detail: "shutting down"})
	case err != nil:
		if r.Context().Err() == nil {
			s.valkeyFailed(r, "tail", err)
		}
		return s.refuseStream(w, r, err)
	}
	defer sub.Close()
	write := s.startEventStream(w)
	if !write([]byte("retry: 1000\n\n")) {
		return nil
	}
	var buf []byte
	for {
		evs, err := sub.Next(r.Context(), s.cfg.TailHeartbeat)
		if err != nil {
			if errors.Is(err, tail.ErrDropped) {
				write([]byte("event: error\ndata: {\"error\":\"too_slow\",\"detail\":\"this subscriber fell behind; reconnect with Last-Event-ID\"}\n\n"))
			}
			return nil // the response has begun: the client reconnects with its last id
		}
		if len(evs) == 0 {
			if !write([]byte(": heartbeat\n\n")) {
				return nil
			}
			continue
		}
		// Every event ready leaves in one write and one flush: a write system call per event
		// cost more CPU than the rest of the fan-out under load.
		buf = buf[:0]
		for _, ev := range evs {
			buf = appendEvent(buf, ev)
		}
		if !write(buf) {
			return nil
		}
		if cap(buf) > maxKeptEvents {
			buf = nil // a burst's buffer is not held by each of a thousand streams
		}
	}
}

// maxKeptEvents bounds the write buffer a stream keeps between writes.
const maxKeptEvents = 64 << 10

// appendEvent appends ev in the text/event-stream format.
func appendEvent(buf []byte, ev tail.Event) []byte {
	buf = append(buf, "id: "...)
	buf = append(buf, ev.ID...)
	buf = append(buf, "\nevent: "...)
	buf = append(buf, ev.Type...)
	buf = append(buf, "\ndata: "...)
	buf = append(buf, ev.Data...)
	return append(buf, "\n\n"...)
}

// startEventStream begins a 200 text/event-stream answer and returns its writer: each write
// is flushed at once, and has at least half of TailWriteTimeout, at most all of it, before the
// connection is given up; false when the client is gone. (The deadline is renewed when half of
// it is used, not at every write: setting it took a twelfth of the fan-out's CPU.)
func (s *Server) startEventStream(w http.ResponseWriter) func([]byte) bool {
	rc := http.NewResponseController(w)
	// The server's WriteTimeout would cut the stream: each write gets a deadline of its own.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var renew time.Time
	return func(b []byte) bool {
		if now := time.Now(); now.After(renew) {
			_ = rc.SetWriteDeadline(now.Add(s.cfg.TailWriteTimeout))
			renew = now.Add(s.cfg.TailWriteTimeout / 2)
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
}

// refuseStream answers a subscription that cannot start now. A standard EventSource (browsers,
// npm eventsource) never retries after a status other than 200 and cannot read Retry-After, so
// a client that asked for text/event-stream and may retry gets a 200 whose stream holds only
// the delay (retry:, with jitter so that refused clients do not come back together), an
// `event: error` naming the reason, and its end: the client reconnects by itself, with its
// Last-Event-ID unchanged (the answer has no id: field), and resumes exactly where it was.
// Other clients (curl) and refusals a retry cannot cure get the error's own status.
func (s *Server) refuseStream(w http.ResponseWriter, r *http.Request, err error) error {
	ae := toAPIError(err)
	if ae.retryAfter <= 0 || !acceptsEventStream(r) {
		return err
	}
	delay := ae.retryAfter + rand.N(ae.retryAfter/2+1)
	body, jerr := json.Marshal(ae.body())
	if jerr != nil {
		return err
	}
	b := make([]byte, 0, 64+len(body))
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, delay.Milliseconds(), 10)
	b = append(b, "\nevent: error\ndata: "...)
	b = append(b, body...)
	b = append(b, "\n\n"...)
	s.startEventStream(w)(b)
	return nil
}

// acceptsEventStream reports whether the request's Accept names text/event-stream, as every
// EventSource's does.
func acceptsEventStream(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			if strings.EqualFold(strings.TrimSpace(mt), "text/event-stream") {
				return true
			}
		}
	}
	return false
}
