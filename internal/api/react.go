package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// reactedBody answers a reaction: the message's counts after it, their version, and whether it
// changed them.
type reactedBody struct {
	CacheID          int64           `json:"cache_id"`
	Reactions        json.RawMessage `json:"reactions"`
	ReactionsVersion int64           `json:"reactions_version"`
	Changed          bool            `json:"changed"`
}

// maxReactorsLimit bounds ?limit= of the reactors' pages.
const maxReactorsLimit = 100

// reactionTarget reads what every reaction path names: the message (its kind, id and, public,
// channel) and the emoji.
func (s *Server) reactionTarget(r *http.Request) (tl message.Timeline, id int64, emoji string, err error) {
	if s.placements[r.Pattern] == inPrivate {
		tl = message.Timeline{Kind: message.Private}
	} else if tl, err = s.timeline(r); err != nil {
		return tl, 0, "", err
	}
	if id, err = pathID(r); err != nil {
		return tl, 0, "", err
	}
	emoji = r.PathValue("emoji") // unescaped
	return tl, id, emoji, message.ValidateEmoji(emoji)
}

// react adds (PUT) or removes (DELETE) the path's user's emoji on a message. The reaction
// script decides atomically on the message's stream slot; a message whose reactions are not
// hot in Valkey is found (its backlog, else PostgreSQL), its place and users checked, its
// reactions read from PostgreSQL, and the script called again with them.
func (s *Server) react(w http.ResponseWriter, r *http.Request) error {
	tl, id, emoji, err := s.reactionTarget(r)
	if err != nil {
		return err
	}
	user := r.PathValue("user_id")
	if err := message.ValidateID("user_id", user); err != nil {
		return err
	}
	x := store.React{Kind: tl.Kind, CacheID: id, ChannelID: tl.Channel, UserID: user, Emoji: emoji, Add: r.Method == http.MethodPut}
	out, err := s.storeReact(r, x)
	if errors.Is(err, store.ErrLookup) {
		if x.Loaded, err = s.loadReactions(r, tl, id, user); err != nil {
			return err
		}
		out, err = s.storeReact(r, x)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, reactedBody{CacheID: id, Reactions: out.Counts, ReactionsVersion: out.Version, Changed: out.Changed})
	return nil
}

// loadReactions finds message id for a reaction by user, checks that it is tl's (a private
// one's: that user is one of its two), and reads its reactions from PostgreSQL.
func (s *Server) loadReactions(r *http.Request, tl message.Timeline, id int64, user string) (*store.Loaded, error) {
	h := s.cfg.History
	if h == nil || !h.Available() {
		return nil, &apiError{code: codeHistoryUnavailable, retryAfter: time.Second,
			detail: "reactions to messages no longer hot in Valkey are read from PostgreSQL: set DATABASE_URL on ingest"}
	}
	if tl.Kind == message.Private {
		tl = message.PrivateTimeline(user)
	}
	rec, found, deleted, err := h.Find(r.Context(), tl, id)
	if err == nil && !found && !deleted && tl.Kind == message.Private {
		// Not among the user's own: another pair's message (403), or none (404).
		var m message.Message
		if m, found, err = h.Whereabouts(r.Context(), message.Private, id); found {
			rec.Message = m
		}
	}
	switch {
	case err != nil:
		return nil, err // PostgreSQL unreachable: 503 history_unavailable (errors.go)
	case deleted || !found:
		return nil, &apiError{code: codeNotFound, detail: fmt.Sprintf("no message %d %s", id, where(tl))}
	case tl.Kind == message.Private && !tl.Contains(&rec):
		return nil, store.ErrNotParticipant
	case !tl.Contains(&rec):
		return nil, &apiError{code: codeNotFound, detail: fmt.Sprintf("no message %d %s", id, where(tl))}
	}
	counts, version, mine, err := h.Reactions(r.Context(), tl.Kind, id, user)
	if err != nil {
		return nil, err
	}
	return &store.Loaded{OwnerID: rec.Message.OwnerID, RecipientID: rec.Message.RecipientID, Counts: counts, Version: version, Mine: mine}, nil
}

// storeReact runs the reaction script, timed, and logs a Valkey failure.
func (s *Server) storeReact(r *http.Request, x store.React) (store.Reacted, error) {
	start := time.Now()
	out, err := s.cfg.Store.React(r.Context(), x)
	s.m.script.WithLabelValues("react").Observe(time.Since(start).Seconds())
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrFull) {
		s.valkeyFailed(r, "react", err)
	}
	return out, err
}

// reactorsBody is a page of the users who reacted with an emoji, oldest first; Next is the
// cursor of the next page (?after=), absent on the last.
type reactorsBody struct {
	CacheID int64    `json:"cache_id"`
	Emoji   string   `json:"emoji"`
	Users   []string `json:"users"`
	Next    *int64   `json:"next,omitempty"`
}

// getReactors pages the users who reacted with the path's emoji on a message.
func (s *Server) getReactors(w http.ResponseWriter, r *http.Request) error {
	tl, id, emoji, err := s.reactionTarget(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	limit, given, err := queryInt(q, "limit", 1, maxReactorsLimit, fmt.Sprintf("must be an integer in 1..%d", maxReactorsLimit))
	if err != nil {
		return err
	}
	if !given {
		limit = 50
	}
	after, _, err := queryInt(q, "after", 0, math.MaxInt64, "must be a cursor from a previous page's next")
	if err != nil {
		return err
	}
	if s.cfg.History == nil || !s.cfg.History.Available() {
		return &apiError{code: codeHistoryUnavailable, retryAfter: time.Second, detail: "who reacted is read from PostgreSQL too: set DATABASE_URL on ingest"}
	}
	rs, err := s.cfg.History.Reactors(r.Context(), tl.Kind, id, emoji, after, int(limit)+1)
	if err != nil && !errors.Is(err, history.ErrDatabase) {
		s.valkeyFailed(r, "reactors", err)
	}
	if err != nil {
		return err
	}
	body := reactorsBody{CacheID: id, Emoji: emoji, Users: []string{}}
	for i, x := range rs {
		if i == int(limit) {
			next := rs[i-1].Version
			body.Next = &next
			break
		}
		body.Users = append(body.Users, x.UserID)
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// viewer reads ?viewer=, the user whose own reactions a read marks ("me"); "" for none.
func viewer(r *http.Request) (string, error) {
	v, ok, err := queryOne(r.URL.Query(), "viewer")
	if err != nil || !ok {
		return "", err
	}
	return v, message.ValidateID("viewer", v)
}

// decorate puts the messages' reactions on a read's entries (history.Reader.Decorate); without
// a reader it returns them as they are. PostgreSQL down does not fail the read: the entries
// carry what Valkey holds (a message whose hot reactions expired shows none until it answers).
func (s *Server) decorate(r *http.Request, tl message.Timeline, msgs [][]byte, viewer string) ([][]byte, error) {
	if s.cfg.History == nil {
		return msgs, nil
	}
	out, err := s.cfg.History.Decorate(r.Context(), tl, msgs, viewer)
	switch {
	case errors.Is(err, history.ErrDatabase):
		s.log.WarnContext(r.Context(), "reading reactions from postgres failed; answering with Valkey's", "err", err)
		return out, nil
	case err != nil:
		s.valkeyFailed(r, "reactions", err)
	}
	return out, err
}
