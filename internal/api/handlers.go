package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	chatpipeapi "github.com/chatpipe/chatpipe/api"
	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// publicRequest is the body of POST /v1/messages and one item of a batch.
type publicRequest struct {
	OwnerID     string  `json:"owner_id"`
	Username    string  `json:"username"`
	Content     string  `json:"content"`
	CreatedAt   string  `json:"created_at"`
	ClientMsgID *string `json:"client_msg_id"`
}

// batchItem is one message of a batch: a public message, with its channel when it is not the
// default one.
type batchItem struct {
	publicRequest
	ChannelID *string `json:"channel_id"`
}

// privateRequest is the body of POST /v1/private-messages.
type privateRequest struct {
	publicRequest
	RecipientID string `json:"recipient_id"`
}

type acceptedBody struct {
	CacheID   int64 `json:"cache_id"`
	Duplicate bool  `json:"duplicate,omitempty"`
}

// toLua validates a request and turns it into a message for the enqueue script: a private one
// to recipient, or a public one in channel.
func (s *Server) toLua(req *publicRequest, recipient string, kind message.Kind, channel string) (store.Message, error) {
	m := message.Message{
		OwnerID:     req.OwnerID,
		RecipientID: recipient,
		ChannelID:   channel,
		Username:    req.Username,
		Content:     req.Content,
		CreatedAt:   req.CreatedAt,
	}
	if err := m.Validate(kind, s.cfg.NowFunc()); err != nil {
		return store.Message{}, err
	}
	lm := store.Message{OwnerID: m.OwnerID, RecipientID: m.RecipientID, ChannelID: m.ChannelID, Data: m.JSON()}
	if req.ClientMsgID != nil {
		if err := message.ValidateID("client_msg_id", *req.ClientMsgID); err != nil {
			return store.Message{}, err
		}
		lm.ClientMsgID = *req.ClientMsgID
	}
	return lm, nil
}

// postPublic accepts a message of the path's channel (the default one for /v1/messages).
func (s *Server) postPublic(w http.ResponseWriter, r *http.Request) error {
	tl, err := s.timeline(r)
	if err != nil {
		s.reject(message.Public, reasonInvalid, 1)
		return err
	}
	var req publicRequest
	if err := s.decode(w, r, s.cfg.MaxBody, &req); err != nil {
		s.reject(message.Public, reasonInvalid, 1)
		return err
	}
	m, err := s.toLua(&req, "", message.Public, tl.Channel)
	if err != nil {
		s.reject(message.Public, reasonInvalid, 1)
		return err
	}
	return s.enqueue(w, r, m)
}

func (s *Server) postPrivate(w http.ResponseWriter, r *http.Request) error {
	var req privateRequest
	if err := s.decode(w, r, s.cfg.MaxBody, &req); err != nil {
		s.reject(message.Private, reasonInvalid, 1)
		return err
	}
	m, err := s.toLua(&req.publicRequest, req.RecipientID, message.Private, "")
	if err != nil {
		s.reject(message.Private, reasonInvalid, 1)
		return err
	}
	return s.enqueue(w, r, m)
}

func (s *Server) decode(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := readJSON(r, w, limit)
	if err != nil {
		return err
	}
	return decodeStrict(body, v)
}

func (s *Server) enqueue(w http.ResponseWriter, r *http.Request, m store.Message) error {
	op := "enqueue_" + m.Kind().String()
	start := time.Now()
	res, err := s.cfg.Store.Enqueue(r.Context(), m)
	s.m.script.WithLabelValues(op).Observe(time.Since(start).Seconds())
	s.count(r, op, m.Kind(), res, err)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, acceptedBody{CacheID: res.CacheID, Duplicate: res.Duplicate})
	return nil
}

// count updates the message counters for one enqueue outcome.
func (s *Server) count(r *http.Request, op string, kind message.Kind, res store.Result, err error) {
	switch {
	case err == nil && res.Duplicate:
		s.reject(kind, reasonDuplicate, 1)
	case err == nil:
		s.m.accepted.WithLabelValues(kind.String()).Inc()
	case errors.Is(err, store.ErrRateLimited):
		s.reject(kind, reasonRateLimited, 1)
	case errors.Is(err, store.ErrBacklogFull):
		s.reject(kind, reasonBacklogFull, 1)
	case errors.Is(err, store.ErrNotDurable):
		// Accepted all the same: it is on the stream and will be persisted.
		s.m.accepted.WithLabelValues(kind.String()).Inc()
		s.m.notDurable.WithLabelValues(kind.String()).Inc()
	case errors.Is(err, store.ErrFull):
		s.reject(kind, reasonValkeyFull, 1)
		s.full.Store(true)
		s.valkeyFailed(r, op, err)
	default:
		s.reject(kind, reasonUnavailable, 1)
		s.valkeyFailed(r, op, err)
	}
}

func (s *Server) reject(kind message.Kind, reason string, n int) {
	s.m.rejected.WithLabelValues(kind.String(), reason).Add(float64(n))
}

func (s *Server) valkeyFailed(r *http.Request, op string, err error) {
	s.m.valkeyError.WithLabelValues(op).Inc()
	s.log.WarnContext(r.Context(), "valkey operation failed", "op", op, "err", err)
}

type batchRequest struct {
	Messages []json.RawMessage `json:"messages"`
}

type batchBody struct {
	Results []any `json:"results"`
}

// postBatch accepts up to MaxBatch public messages. Each is validated on its own; the valid ones
// go to Valkey in one pipelined round trip. Results come back in order.
func (s *Server) postBatch(w http.ResponseWriter, r *http.Request) error {
	// Take a slot before reading the body: waiting bodies stay in the kernel's buffers.
	wctx, cancel := context.WithTimeout(r.Context(), s.cfg.BatchWait)
	err := s.batchSlots.Acquire(wctx, 1)
	cancel()
	if err != nil {
		return &apiError{code: codeUnavailable, retryAfter: time.Second,
			detail: fmt.Sprintf("more than %d batches in progress for %s; retry", s.cfg.BatchConcurrency, s.cfg.BatchWait)}
	}
	defer s.batchSlots.Release(1)
	var req batchRequest
	if err := s.decode(w, r, s.cfg.MaxBatchBody, &req); err != nil {
		return err
	}
	switch {
	case len(req.Messages) == 0:
		return &apiError{code: codeInvalid, field: "messages", detail: "messages: at least one message required"}
	case len(req.Messages) > s.cfg.MaxBatch:
		return &apiError{code: codeInvalid, field: "messages", detail: fmt.Sprintf("messages: at most %d per batch", s.cfg.MaxBatch)}
	}
	results := make([]any, len(req.Messages))
	msgs := make([]store.Message, 0, len(req.Messages))
	index := make([]int, 0, len(req.Messages))
	for i, raw := range req.Messages {
		var item batchItem
		err := decodeChecked(raw, true, &item) // an item of a body checked whole
		channel := s.cfg.DefaultChannel
		if err == nil && item.ChannelID != nil {
			channel = *item.ChannelID
			err = message.ValidateChannel("channel_id", channel)
		}
		var m store.Message
		if err == nil {
			m, err = s.toLua(&item.publicRequest, "", message.Public, channel)
		}
		if err != nil {
			s.reject(message.Public, reasonInvalid, 1)
			results[i] = toAPIError(err).body()
			continue
		}
		msgs = append(msgs, m)
		index = append(index, i)
	}
	start := time.Now()
	outs := s.cfg.Store.EnqueueMany(r.Context(), message.Public, msgs)
	s.m.script.WithLabelValues("enqueue_batch").Observe(time.Since(start).Seconds())
	unavailable := 0
	for j, o := range outs {
		s.count(r, "enqueue_batch", message.Public, o.Result, o.Err)
		if o.Err != nil {
			if errors.Is(o.Err, store.ErrUnavailable) || errors.Is(o.Err, store.ErrFull) {
				unavailable++
			}
			results[index[j]] = toAPIError(o.Err).body()
			continue
		}
		results[index[j]] = acceptedBody{CacheID: o.CacheID, Duplicate: o.Duplicate}
	}
	if unavailable > 0 && unavailable == len(outs) {
		return outs[0].Err
	}
	writeJSON(w, http.StatusOK, batchBody{Results: results})
	return nil
}

// getRecent answers with the ring entries of the path's timeline, oldest first, as stored.
func (s *Server) getRecent(w http.ResponseWriter, r *http.Request) error {
	tl, err := s.timeline(r)
	if err != nil {
		return err
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.RecentSize {
			return &apiError{code: codeInvalid, field: "limit", detail: fmt.Sprintf("limit: must be an integer in 1..%d", s.cfg.RecentSize)}
		}
		limit = n
	}
	who, err := viewer(r)
	if err != nil {
		return err
	}
	start := time.Now()
	entries, err := s.cfg.Store.Recent(r.Context(), tl, limit)
	s.m.script.WithLabelValues("recent").Observe(time.Since(start).Seconds())
	if err != nil {
		s.valkeyFailed(r, "recent", err)
		return err
	}
	msgs := make([][]byte, 0, len(entries))
	for _, e := range entries {
		// Another producer of the legacy list could have written anything; pass on JSON only.
		if !json.Valid([]byte(e)) {
			s.log.WarnContext(r.Context(), "skipping a ring entry that is not JSON", "timeline", tl.Kind.String(), "bytes", len(e))
			continue
		}
		msgs = append(msgs, []byte(e))
	}
	if msgs, err = s.decorate(r, tl, msgs, who); err != nil {
		return err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"messages":[`)
	for n, e := range msgs {
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e)
	}
	buf.WriteString("]}\n")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
	return nil
}

// deleteMessage deletes a public message. Under /v1/channels/{channel}/ the message must be
// that channel's (found in its flush stream or in PostgreSQL), else 404: a deletion names its
// channel, for the channel's ring and tail. DELETE /v1/messages/{id} deletes the message of
// that id in whatever channel it is, the default one when neither source knows it (no
// DATABASE_URL), as before channels.
func (s *Server) deleteMessage(w http.ResponseWriter, r *http.Request) error {
	tl, err := s.timeline(r)
	if err != nil {
		return err
	}
	id, err := pathID(r)
	if err != nil {
		return err
	}
	channel := tl.Channel
	named := s.placements[r.Pattern] == inChannel
	if s.cfg.History != nil || named {
		m, found, err := s.whereabouts(r, id)
		switch {
		case err != nil && named:
			return &apiError{code: codeHistoryUnavailable, retryAfter: time.Second, detail: "finding the message's channel needs PostgreSQL (DATABASE_URL), which did not answer; retry later"}
		case named && (!found || m.ChannelID != channel):
			return &apiError{code: codeNotFound, detail: fmt.Sprintf("no message %d in channel %s", id, channel)}
		case found:
			channel = m.ChannelID
		}
	}
	start := time.Now()
	err = s.cfg.Store.Delete(r.Context(), message.Ref{Kind: message.Public, CacheID: id, ChannelID: channel})
	s.m.script.WithLabelValues("delete").Observe(time.Since(start).Seconds())
	if err != nil {
		return s.deleteFailed(r, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// whereabouts looks a public message up (History.Whereabouts); without a History it knows
// nothing.
func (s *Server) whereabouts(r *http.Request, id int64) (message.Message, bool, error) {
	if s.cfg.History == nil {
		return message.Message{}, false, history.ErrNoDatabase
	}
	return s.cfg.History.Whereabouts(r.Context(), message.Public, id)
}

// deleteFailed logs a Valkey failure of a deletion and returns err for the answer.
func (s *Server) deleteFailed(r *http.Request, err error) error {
	if errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrFull) {
		s.valkeyFailed(r, "delete", err)
	}
	return err
}

func (s *Server) getRateLimit(w http.ResponseWriter, r *http.Request) error {
	rl, err := s.cfg.Store.RateLimit(r.Context())
	if err != nil {
		s.valkeyFailed(r, "rate_limit", err)
		return err
	}
	writeJSON(w, http.StatusOK, rl)
	return nil
}

type rateLimitRequest struct {
	Limit         *int    `json:"limit"`
	WindowSeconds *int    `json:"window_seconds"`
	Algorithm     *string `json:"algorithm"`
}

// putRateLimit sets the shared rate limit. limit and window_seconds are required; an omitted
// algorithm keeps the current one.
func (s *Server) putRateLimit(w http.ResponseWriter, r *http.Request) error {
	var req rateLimitRequest
	if err := s.decode(w, r, s.cfg.MaxBody, &req); err != nil {
		return err
	}
	if req.Limit == nil {
		return &apiError{code: codeInvalid, field: "limit", detail: "limit: required"}
	}
	if req.WindowSeconds == nil {
		return &apiError{code: codeInvalid, field: "window_seconds", detail: "window_seconds: required"}
	}
	rl := store.RateLimit{Limit: *req.Limit, WindowSeconds: *req.WindowSeconds}
	if req.Algorithm != nil {
		rl.Algorithm = store.Algorithm(*req.Algorithm)
	} else {
		cur, err := s.cfg.Store.RateLimit(r.Context())
		if err != nil {
			s.valkeyFailed(r, "rate_limit", err)
			return err
		}
		rl.Algorithm = cur.Algorithm
	}
	if err := rl.Validate(); err != nil {
		var fe *store.FieldError
		if errors.As(err, &fe) {
			return &apiError{code: codeInvalid, field: fe.Field, detail: fe.Error()}
		}
		return &apiError{code: codeInvalid, detail: err.Error()}
	}
	if err := s.cfg.Store.SetRateLimit(r.Context(), rl); err != nil {
		s.valkeyFailed(r, "rate_limit", err)
		return err
	}
	writeJSON(w, http.StatusOK, rl)
	return nil
}

// openapi serves the API's OpenAPI document, to generate clients from (no auth: it is public).
func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "application/yaml")
	h.Set("Content-Length", strconv.Itoa(len(chatpipeapi.OpenAPI)))
	_, _ = w.Write(chatpipeapi.OpenAPI)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz fails while shutting down, while Valkey does not answer, while it refuses writes for
// memory (checked by a probe write once an enqueue met OOM) and while ReadyFunc fails.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	if !s.ready.Load() {
		return &apiError{code: codeUnavailable, detail: "shutting down", retryAfter: time.Second}
	}
	if err := s.cfg.Store.Ping(r.Context()); err != nil {
		s.valkeyFailed(r, "ping", err)
		return &apiError{code: codeUnavailable, detail: "valkey unreachable", retryAfter: time.Second}
	}
	if s.full.Load() {
		switch err := s.cfg.Store.Probe(r.Context()); {
		case errors.Is(err, store.ErrFull):
			return &apiError{code: codeValkeyFull, detail: "valkey is out of memory: writes are refused until the backlog drains", retryAfter: time.Second}
		case err != nil:
			return &apiError{code: codeUnavailable, detail: "valkey does not take writes", retryAfter: time.Second}
		}
		s.full.Store(false)
	}
	if s.cfg.ReadyFunc != nil {
		if err := s.cfg.ReadyFunc(); err != nil {
			return &apiError{code: codeUnavailable, detail: err.Error(), retryAfter: time.Second}
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}
