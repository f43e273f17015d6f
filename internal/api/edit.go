package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// editRequest is the body of an edit: who edits, and the new text.
type editRequest struct {
	OwnerID string `json:"owner_id"`
	Content string `json:"content"`
}

type editedBody struct {
	CacheID int64 `json:"cache_id"`
	Version int64 `json:"version"`
}

// editMessage edits a message of the path's channel (the default one for /v1/messages/{id}) or a
// private message. A public message still in its channel's backlog index is found by the edit
// script itself; else ingest finds it (the index, else PostgreSQL) and checks its place and
// author. The edit script decides the rest (deleted, If-Match, rate limit) atomically.
func (s *Server) editMessage(w http.ResponseWriter, r *http.Request) error {
	// The timeline the message is looked for in: the path's channel, or (a private message)
	// its author's own, once the body names the author.
	private := s.placements[r.Pattern] == inPrivate
	var tl message.Timeline
	var err error
	if !private {
		if tl, err = s.timeline(r); err != nil {
			return err
		}
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ifMatch, err := parseIfMatch(r.Header.Values("If-Match"))
	if err != nil {
		return err
	}
	var req editRequest
	if err := s.decode(w, r, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if err := message.ValidateID("owner_id", req.OwnerID); err != nil {
		return err
	}
	if err := message.ValidateContent(req.Content); err != nil {
		return err
	}
	if private {
		tl = message.PrivateTimeline(req.OwnerID)
	}
	if s.cfg.History == nil || !s.cfg.History.Available() {
		return &apiError{code: codeHistoryUnavailable, retryAfter: time.Second,
			detail: "edits find messages no longer in Valkey in PostgreSQL: set DATABASE_URL on ingest"}
	}
	now := message.FormatTime(s.cfg.NowFunc())
	if tl.Kind == message.Public {
		// The usual edit, of a recent message: the script finds it in its channel's backlog
		// index, in the same round trip. Else ingest finds it (PostgreSQL) and edits it whole.
		version, err := s.storeEdit(r, store.Edit{Kind: tl.Kind, CacheID: id, IfMatch: ifMatch,
			Message: message.Message{OwnerID: req.OwnerID, ChannelID: tl.Channel, Content: req.Content, EditedAt: now}})
		if !errors.Is(err, store.ErrLookup) {
			return s.edited(w, id, version, err)
		}
	}
	rec, found, deleted, err := s.cfg.History.Find(r.Context(), tl, id)
	switch {
	case err != nil:
		return err // PostgreSQL unreachable: 503 history_unavailable (errors.go)
	case deleted || !found || !tl.Contains(&rec):
		return &apiError{code: codeNotFound, detail: fmt.Sprintf("no message %d %s", id, where(tl))}
	case rec.Message.OwnerID != req.OwnerID:
		return store.ErrNotAuthor
	}
	m := rec.Message
	m.Content, m.CreatedAt, m.EditedAt = req.Content, message.FormatTime(rec.CreatedAt), now
	version, err := s.storeEdit(r, store.Edit{Kind: tl.Kind, CacheID: id, Message: m, Found: max(rec.Version, id), IfMatch: ifMatch})
	return s.edited(w, id, version, err)
}

// storeEdit runs the edit script, timed, and logs a Valkey failure.
func (s *Server) storeEdit(r *http.Request, e store.Edit) (int64, error) {
	start := time.Now()
	version, err := s.cfg.Store.Edit(r.Context(), e)
	s.m.script.WithLabelValues("edit").Observe(time.Since(start).Seconds())
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrFull) {
		s.valkeyFailed(r, "edit", err)
	}
	return version, err
}

// edited answers an edit: its version, or its error.
func (s *Server) edited(w http.ResponseWriter, id, version int64, err error) error {
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, editedBody{CacheID: id, Version: version})
	return nil
}

// where names a message's place in a not-found answer.
func where(tl message.Timeline) string {
	if tl.Kind == message.Private {
		return "among " + tl.User + "'s private messages"
	}
	return "in channel " + tl.Channel
}

// parseIfMatch reads an If-Match header: one version, quoted as an entity tag ("42") or bare;
// "*" (any version) and no header ask for none (0).
func parseIfMatch(vals []string) (int64, error) {
	bad := &apiError{code: codeInvalid, field: "If-Match", detail: `If-Match: one version, as "42"`}
	switch {
	case len(vals) == 0:
		return 0, nil
	case len(vals) > 1:
		return 0, bad
	}
	v := strings.TrimSpace(vals[0])
	if v == "*" {
		return 0, nil
	}
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 1 || len(v) > 19 || v[0] == '+' || v[0] == '0' {
		return 0, bad
	}
	return n, nil
}
