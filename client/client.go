// Package client is the Go client of chatpipe's ingest API: sends that a retry never
// duplicates, Retry-After honoured, batches answered per message, history as an iterator of
// pages, and a live tail that resumes by itself — after a cut with its cursor, after a 410 by
// reading history — so that its caller sees every message once.
//
// A Client is safe for concurrent use and holds no global state.
package client

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to one ingest (or a load balancer in front of several).
type Client struct {
	base  string
	token string
	hc    *http.Client
	retry RetryPolicy
}

// RetryPolicy says how a Client retries what the server asks to be retried (429, 503, lost
// connections): with jittered exponential backoff between Min and Max, never sooner than the
// server's Retry-After, at most Attempts times, and never past the context's deadline.
type RetryPolicy struct {
	Attempts int
	Min, Max time.Duration
}

// DefaultRetry retries for about a minute.
var DefaultRetry = RetryPolicy{Attempts: 30, Min: 100 * time.Millisecond, Max: 5 * time.Second}

// Option configures a Client.
type Option func(*Client)

// WithToken sends token as the bearer token (INGEST_AUTH_TOKEN).
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithHTTPClient uses hc (its timeout bounds one request; a tail's stream has none of its own).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithRetry sets the retry policy; Attempts 1 retries nothing.
func WithRetry(p RetryPolicy) Option { return func(c *Client) { c.retry = p } }

// New returns a Client of the ingest at baseURL (http://host:port).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q is not http(s)://host[:port]", baseURL)
	}
	c := &Client{base: strings.TrimRight(baseURL, "/"), hc: http.DefaultClient, retry: DefaultRetry}
	for _, o := range opts {
		o(c)
	}
	c.retry.Attempts = max(c.retry.Attempts, 1)
	return c, nil
}

// Sentinel errors; an *Error wraps the one of its code (errors.Is).
var (
	ErrInvalid         = errors.New("invalid")          // 400, 413, 415: the request must change
	ErrUnauthorized    = errors.New("unauthorized")     // 401
	ErrForbidden       = errors.New("forbidden")        // 403 forbidden: the token's scope lacks the method
	ErrNotAuthor       = errors.New("not the author")   // 403 not_author
	ErrNotFound        = errors.New("not found")        // 404
	ErrVersionMismatch = errors.New("version mismatch") // 412
	ErrRateLimited     = errors.New("rate limited")     // 429
	ErrUnavailable     = errors.New("unavailable")      // 503 (and lost connections), after the retries
	ErrCursorTooOld    = errors.New("cursor too old")   // 410
	// ErrNotParticipant: a reaction to a private message by neither of its users (403).
	ErrNotParticipant = errors.New("not a participant")
	// ErrTooManyReactions: the message has the most distinct emoji allowed (409).
	ErrTooManyReactions = errors.New("too many reactions")
)

// Error is an answer of the server other than success.
type Error struct {
	Status int
	// Code, Detail, Field, CacheID and Version are the server's Error object.
	Code, Detail, Field string
	RetryAfter          time.Duration
	// CacheID is set on not_durable: the message was accepted under this id.
	CacheID int64
	// Version is the current version, on version_mismatch.
	Version int64
}

func (e *Error) Error() string {
	s := fmt.Sprintf("chatpipe: %d %s: %s", e.Status, e.Code, e.Detail)
	if e.Field != "" {
		s += " (field " + e.Field + ")"
	}
	return s
}

// Unwrap gives the sentinel of the error's status.
func (e *Error) Unwrap() error {
	switch e.Status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return ErrInvalid
	case http.StatusUnauthorized:
		return ErrUnauthorized
	case http.StatusForbidden:
		switch e.Code {
		case "forbidden":
			return ErrForbidden
		case "not_participant":
			return ErrNotParticipant
		}
		return ErrNotAuthor
	case http.StatusConflict:
		return ErrTooManyReactions
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusPreconditionFailed:
		return ErrVersionMismatch
	case http.StatusTooManyRequests:
		return ErrRateLimited
	case http.StatusGone:
		return ErrCursorTooOld
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	return nil
}

// retryable says whether an answer asks to be tried again.
func (e *Error) retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable
}

// errorBody is the server's Error object.
type errorBody struct {
	Error        string `json:"error"`
	Detail       string `json:"detail"`
	Field        string `json:"field"`
	RetryAfterMS int64  `json:"retry_after_ms"`
	CacheID      int64  `json:"cache_id"`
	Version      int64  `json:"version"`
}

// answerError is the *Error of an answer other than success, its body read: the server's Error
// object, or, from something else (a proxy's page), the status and the text.
func answerError(res *http.Response, answer []byte) *Error {
	var eb errorBody
	_ = json.Unmarshal(answer, &eb)
	if eb.Error == "" {
		eb.Error, eb.Detail = strings.ToLower(strings.ReplaceAll(http.StatusText(res.StatusCode), " ", "_")), strings.TrimSpace(string(answer))
	}
	return eb.toError(res.StatusCode, res.Header)
}

func (b errorBody) toError(status int, header http.Header) *Error {
	e := &Error{Status: status, Code: b.Error, Detail: b.Detail, Field: b.Field, CacheID: b.CacheID, Version: b.Version,
		RetryAfter: time.Duration(b.RetryAfterMS) * time.Millisecond}
	if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && time.Duration(s)*time.Second > e.RetryAfter {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// call sends one request (body JSON-encoded, nil for none) and decodes a 2xx answer into out
// (nil: ignored). It retries 429 and 503 per the policy, and a lost connection or answer (whose
// outcome is unknown) only when retryLost: when sending the request twice is harmless.
func (c *Client) call(ctx context.Context, method, path string, header http.Header, body, out any, retryLost bool) error {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return fmt.Errorf("chatpipe: encoding the request: %w", err)
		}
	}
	var last error
	for attempt := 0; attempt < c.retry.Attempts; attempt++ {
		if attempt > 0 {
			if err := c.wait(ctx, attempt, last); err != nil {
				return errors.Join(last, err)
			}
		}
		res, err := c.send(ctx, method, path, header, raw)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			last = fmt.Errorf("%w: %v", ErrUnavailable, err)
			if !retryLost {
				return last
			}
			continue
		}
		answer, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
		res.Body.Close()
		if err != nil {
			last = fmt.Errorf("%w: reading the answer: %v", ErrUnavailable, err)
			if !retryLost {
				return last
			}
			continue
		}
		if res.StatusCode >= 200 && res.StatusCode < 300 {
			if out != nil && len(answer) > 0 {
				if err := json.Unmarshal(answer, out); err != nil {
					return fmt.Errorf("chatpipe: decoding the answer of %s %s: %w", method, path, err)
				}
			}
			return nil
		}
		e := answerError(res, answer)
		if !e.retryable() {
			return e
		}
		last = e
	}
	return last
}

func (c *Client) send(ctx context.Context, method, path string, header http.Header, raw []byte) (*http.Response, error) {
	var body io.Reader
	if raw != nil {
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return c.hc.Do(req)
}

// wait sleeps before attempt: the server's Retry-After when it gave one, else jittered
// exponential backoff; an error when the context ends first (or would, by its deadline).
func (c *Client) wait(ctx context.Context, attempt int, last error) error {
	d := min(c.retry.Min<<min(attempt-1, 20), c.retry.Max)
	d = d/2 + rand.N(d/2+1) // jitter: replicas and clients do not come back in step
	var e *Error
	if errors.As(last, &e) && e.RetryAfter > d {
		d = e.RetryAfter + rand.N(e.RetryAfter/4+1)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.DeadlineExceeded
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// newClientMsgID is a random client_msg_id.
func newClientMsgID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
