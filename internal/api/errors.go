package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// Error codes of the API, the "error" field of every error body.
const (
	codeInvalid              = "invalid"
	codeInvalidJSON          = "invalid_json"
	codeUnknownField         = "unknown_field"
	codeUnauthorized         = "unauthorized"
	codeForbidden            = "forbidden"
	codeNotFound             = "not_found"
	codeNotAuthor            = "not_author"
	codeNotParticipant       = "not_participant"
	codeTooManyReactions     = "too_many_reactions"
	codeVersionMismatch      = "version_mismatch"
	codeMethodNotAllowed     = "method_not_allowed"
	codeTooLarge             = "body_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeRateLimited          = "rate_limited"
	codeBacklogFull          = "backlog_full"
	codeUnavailable          = "unavailable"
	codeValkeyFull           = "valkey_full"
	codeNotDurable           = "not_durable"
	codeHistoryUnavailable   = "history_unavailable"
	codeCursorTooOld         = "cursor_too_old"
	codeInternal             = "internal"
)

// statusOf maps each code to its HTTP status: the one place that does.
var statusOf = map[string]int{
	codeInvalid:              http.StatusBadRequest,
	codeInvalidJSON:          http.StatusBadRequest,
	codeUnknownField:         http.StatusBadRequest,
	codeUnauthorized:         http.StatusUnauthorized,
	codeForbidden:            http.StatusForbidden,
	codeNotFound:             http.StatusNotFound,
	codeNotAuthor:            http.StatusForbidden,
	codeNotParticipant:       http.StatusForbidden,
	codeTooManyReactions:     http.StatusConflict,
	codeVersionMismatch:      http.StatusPreconditionFailed,
	codeMethodNotAllowed:     http.StatusMethodNotAllowed,
	codeTooLarge:             http.StatusRequestEntityTooLarge,
	codeUnsupportedMediaType: http.StatusUnsupportedMediaType,
	codeRateLimited:          http.StatusTooManyRequests,
	codeBacklogFull:          http.StatusServiceUnavailable,
	codeUnavailable:          http.StatusServiceUnavailable,
	codeValkeyFull:           http.StatusServiceUnavailable,
	codeNotDurable:           http.StatusServiceUnavailable,
	codeHistoryUnavailable:   http.StatusServiceUnavailable,
	codeCursorTooOld:         http.StatusGone,
	codeInternal:             http.StatusInternalServerError,
}

// apiError is an error the client is told about.
type apiError struct {
	code       string
	field      string
	detail     string
	retryAfter time.Duration
	// cacheID is the id of a message accepted but not durable.
	cacheID int64
	// version is a message's current version, when an edit named another.
	version int64
}

func (e *apiError) Error() string { return e.code + ": " + e.detail }

// errorBody is the JSON of an error, alone or as one result of a batch.
type errorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
	// RetryAfterMS is set on rate_limited, backlog_full, unavailable, valkey_full and not_durable.
	RetryAfterMS int64 `json:"retry_after_ms,omitempty"`
	// CacheID is the id of a message that not_durable accepted: a retry with the same
	// client_msg_id returns it once the write is durable.
	CacheID int64 `json:"cache_id,omitempty"`
	// Version is the message's current version, on version_mismatch.
	Version int64 `json:"version,omitempty"`
}

// toAPIError classifies any error of a handler. Errors it does not know are internal: logged
// with their text, answered without it.
func toAPIError(err error) *apiError {
	var ae *apiError
	var fe *message.FieldError
	var rle *store.RateLimitedError
	var nde *store.NotDurableError
	var vme *store.VersionMismatchError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &fe):
		return &apiError{code: codeInvalid, field: fe.Field, detail: fe.Error()}
	case errors.As(err, &rle):
		return &apiError{code: codeRateLimited, detail: "rate limit reached, retry later", retryAfter: rle.RetryAfter}
	case errors.Is(err, store.ErrBacklogFull):
		return &apiError{code: codeBacklogFull, detail: "the flush backlog is full, retry later", retryAfter: time.Second}
	case errors.As(err, &nde):
		return &apiError{code: codeNotDurable, cacheID: nde.CacheID, retryAfter: time.Second,
			detail: "the message was accepted but its write was not confirmed durable in time (" + nde.Detail + "); retry with the same client_msg_id"}
	case errors.Is(err, store.ErrFull):
		return &apiError{code: codeValkeyFull, detail: "valkey is out of memory until the flush workers drain the backlog, retry later", retryAfter: time.Second}
	case errors.Is(err, history.ErrDatabase):
		return &apiError{code: codeHistoryUnavailable, detail: "PostgreSQL is unreachable, retry later", retryAfter: time.Second}
	case errors.Is(err, store.ErrUnavailable):
		return &apiError{code: codeUnavailable, detail: "the message store is unreachable, retry later", retryAfter: time.Second}
	case errors.Is(err, store.ErrNotFound):
		return &apiError{code: codeNotFound, detail: "no message with that id"}
	case errors.Is(err, store.ErrNotParticipant):
		return &apiError{code: codeNotParticipant, detail: "only the two users of a private message react to it"}
	case errors.Is(err, store.ErrTooManyReactions):
		return &apiError{code: codeTooManyReactions, detail: "the message has the most distinct emoji allowed (REACTIONS_MAX_DISTINCT); react with one it has"}
	case errors.Is(err, store.ErrNotAuthor):
		return &apiError{code: codeNotAuthor, detail: "only the author of a message edits it"}
	case errors.As(err, &vme):
		return &apiError{code: codeVersionMismatch, version: vme.Current,
			detail: fmt.Sprintf("the message is at version %d, not the one If-Match names: read it again, then edit", vme.Current)}
	}
	return &apiError{code: codeInternal, detail: "internal error"}
}

func (e *apiError) body() errorBody {
	return errorBody{Error: e.code, Detail: e.detail, Field: e.field, RetryAfterMS: e.retryAfter.Milliseconds(), CacheID: e.cacheID, Version: e.version}
}

// writeError answers with err's status and JSON body, and a Retry-After header in whole
// seconds (rounded up) where the client should come back.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	ae := toAPIError(err)
	if ae.code == codeInternal {
		s.log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if ae.retryAfter > 0 {
		secs := int64((ae.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, statusOf[ae.code], ae.body())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	// Encoded whole first, so the answer carries its length and leaves in one write instead of
	// being chunked (a batch's answer is larger than net/http's buffer).
	buf := bufPool.Get().(*bytes.Buffer)
	defer putBuf(buf)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only the API's own types reach here, and they always encode.
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, `{"error":"internal","detail":"encoding the answer failed"}`+"\n")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	// An error here means the client went away; there is nobody left to tell.
	_, _ = w.Write(buf.Bytes())
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putBuf returns a buffer to the pool unless a huge answer grew it.
func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		b.Reset()
		bufPool.Put(b)
	}
}
