// Package api is ingest's HTTP JSON API: it validates and authenticates requests, runs them
// through package store on Valkey, and answers with the status codes of docs/api.md. Errors are
// {"error":"<code>","detail":"...","field":"..."}, mapped to statuses in one place (errors.go).
package api

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/chatpipe/chatpipe/internal/auth"
	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/tail"
)

// Store is what the API needs of Valkey, in terms of messages and users, never of keys
// (*store.Store, in either layout).
type Store interface {
	// Enqueue accepts one message (see store.Store.Enqueue for the errors).
	Enqueue(ctx context.Context, m store.Message) (store.Result, error)
	// EnqueueMany accepts messages of one kind, outcomes in order.
	EnqueueMany(ctx context.Context, kind message.Kind, msgs []store.Message) []store.Outcome
	// Recent returns up to limit of the newest ring entries of a timeline, oldest first
	// (limit < 1: the whole ring).
	Recent(ctx context.Context, tl message.Timeline, limit int) ([]string, error)
	// Delete deletes a message, from the rings of its users when the reference names them
	// (store.ErrNotFound for an id never issued).
	Delete(ctx context.Context, ref message.Ref) error
	// Edit accepts an edit of a message ingest found and returns its version (see
	// store.Store.Edit for the errors).
	Edit(ctx context.Context, e store.Edit) (int64, error)
	// React adds or removes a user's emoji on a message (see store.Store.React for the
	// errors).
	React(ctx context.Context, x store.React) (store.Reacted, error)
	// RateLimit and SetRateLimit read and store the shared rate limit.
	RateLimit(ctx context.Context) (store.RateLimit, error)
	SetRateLimit(ctx context.Context, rl store.RateLimit) error
	// Ping checks that Valkey answers; Probe, after an OOM, that it takes writes again.
	Ping(ctx context.Context) error
	Probe(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Store runs the Valkey operations (either layout). Required.
	Store Store
	// Logger logs failures. Default: discard.
	Logger *slog.Logger
	// Registerer takes the API's metrics. Default: a throwaway registry.
	Registerer prometheus.Registerer
	// Metrics serves /metrics. Default: none (404).
	Metrics http.Handler
	// Tokens, when set, are the bearer tokens of /v1/: a request must carry one whose scope
	// has its method (GET: read; the others: write). Nil: no auth.
	Tokens *auth.Keyring
	// RecentSize is the ring size, the largest ?limit= of the recent endpoints. Default 500.
	RecentSize int
	// MaxBody is the largest body of a single request, in bytes. Default 64 KiB.
	MaxBody int64
	// MaxBatchBody is the largest body of a batch request, in bytes. Default 1 MiB.
	MaxBatchBody int64
	// MaxBatch is the most messages in one batch. Default 1000.
	MaxBatch int
	// BatchConcurrency is the most batch requests decoded and enqueued at once; the others wait,
	// their bodies unread, for up to BatchWait and then get 503. Valkey runs scripts one at a
	// time, so more concurrent batches add memory (up to MaxBatchBody each, several times over
	// once decoded), not throughput. Default 8.
	BatchConcurrency int
	// BatchWait bounds the wait for a batch slot. Default 5s.
	BatchWait time.Duration
	// NowFunc gives the time for messages sent without created_at. Default time.Now.
	NowFunc func() time.Time
	// DefaultChannel is the channel of POST /v1/messages and the other endpoints from before
	// channels. Default message.DefaultChannel.
	DefaultChannel string
	// History reads the history endpoints; nil (or one without a database) answers them 503
	// history_unavailable.
	History *history.Reader
	// Tail serves the live-tail endpoints; nil answers them 503.
	Tail *tail.Tails
	// TailHeartbeat is the time between SSE comments on a quiet stream. Default 15s.
	TailHeartbeat time.Duration
	// TailWriteTimeout bounds each write to an SSE client. Default 10s.
	TailWriteTimeout time.Duration
	// ReadyFunc, when set, is one more readiness check (Valkey's memory policy); /readyz fails
	// with its error.
	ReadyFunc func() error
}

// Server is the HTTP API. Its zero value is not usable; call New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	handler http.Handler
	ready   atomic.Bool
	// full is set when Valkey answered OOM, and cleared when a probe write succeeds: /readyz
	// fails in between.
	full atomic.Bool
	// batchSlots bounds the batch requests in progress (Config.BatchConcurrency).
	batchSlots *semaphore.Weighted
	// placements is where each route pattern's path puts the timeline it serves (routes).
	placements map[string]placement
}

// placement is where a route's path puts the timeline it serves: declared with the route, so
// that handlers ask for the timeline (Server.timeline) and never read the path's shape.
type placement uint8

const (
	nowhere          placement = iota // no timeline (the rate limit)
	inDefaultChannel                  // /v1/messages…: the default channel
	inChannel                         // /v1/channels/{channel}/…
	ofUser                            // /v1/users/{id}/private-messages/…: a user's private messages
	inPrivate                         // /v1/private-messages…: a private message, its users in the body or found
	everyChannel                      // /v1/channels/stream: the channels of the query
)

// New returns a Server, ready to serve.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.RecentSize == 0 {
		cfg.RecentSize = 500
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.MaxBatchBody == 0 {
		cfg.MaxBatchBody = 1 << 20
	}
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.BatchConcurrency == 0 {
		cfg.BatchConcurrency = 8
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = 5 * time.Second
	}
	cfg.DefaultChannel = cmp.Or(cfg.DefaultChannel, message.DefaultChannel)
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	if cfg.TailHeartbeat == 0 {
		cfg.TailHeartbeat = 15 * time.Second
	}
	if cfg.TailWriteTimeout == 0 {
		cfg.TailWriteTimeout = 10 * time.Second
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, m: m, batchSlots: semaphore.NewWeighted(int64(cfg.BatchConcurrency))}
	s.ready.Store(true)
	s.handler = m.instrument(s.routes())
	return s, nil
}

// ServeHTTP serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// SetReady sets what /readyz reports beside Valkey's health; false while shutting down, so
// that load balancers stop sending before in-flight requests are done.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	s.placements = map[string]placement{}
	v1 := func(pattern string, p placement, byMethod methods) {
		s.placements[pattern] = p
		mux.Handle(pattern, s.auth(s.route(byMethod)))
	}
	v1("/v1/messages", inDefaultChannel, methods{http.MethodPost: s.postPublic})
	v1("/v1/messages/batch", inDefaultChannel, methods{http.MethodPost: s.postBatch})
	v1("/v1/private-messages", inPrivate, methods{http.MethodPost: s.postPrivate})
	v1("/v1/messages/recent", inDefaultChannel, methods{http.MethodGet: s.getRecent})
	v1("/v1/users/{id}/private-messages/recent", ofUser, methods{http.MethodGet: s.getRecent})
	v1("/v1/messages/{cache_id}", inDefaultChannel, methods{http.MethodDelete: s.deleteMessage, http.MethodPatch: s.editMessage})
	v1("/v1/private-messages/{cache_id}", inPrivate, methods{http.MethodDelete: s.deletePrivate, http.MethodPatch: s.editMessage})
	v1("/v1/messages/history", inDefaultChannel, methods{http.MethodGet: s.getHistory})
	v1("/v1/users/{id}/private-messages/history", ofUser, methods{http.MethodGet: s.getHistory})
	v1("/v1/messages/stream", inDefaultChannel, methods{http.MethodGet: s.getStream})
	v1("/v1/users/{id}/private-messages/stream", ofUser, methods{http.MethodGet: s.getStream})
	v1("/v1/channels/stream", everyChannel, methods{http.MethodGet: s.getStream})
	v1("/v1/channels/{channel}/messages", inChannel, methods{http.MethodPost: s.postPublic})
	v1("/v1/channels/{channel}/messages/recent", inChannel, methods{http.MethodGet: s.getRecent})
	v1("/v1/channels/{channel}/messages/history", inChannel, methods{http.MethodGet: s.getHistory})
	v1("/v1/channels/{channel}/messages/stream", inChannel, methods{http.MethodGet: s.getStream})
	v1("/v1/channels/{channel}/messages/{cache_id}", inChannel, methods{http.MethodDelete: s.deleteMessage, http.MethodPatch: s.editMessage})
	for _, base := range []struct {
		path string
		p    placement
	}{{"/v1/messages/{cache_id}", inDefaultChannel}, {"/v1/channels/{channel}/messages/{cache_id}", inChannel}, {"/v1/private-messages/{cache_id}", inPrivate}} {
		v1(base.path+"/reactions/{emoji}/{user_id}", base.p, methods{http.MethodPut: s.react, http.MethodDelete: s.react})
		v1(base.path+"/reactions/{emoji}", base.p, methods{http.MethodGet: s.getReactors})
	}
	v1("/v1/rate-limit", nowhere, methods{http.MethodGet: s.getRateLimit, http.MethodPut: s.putRateLimit})
	mux.Handle("/openapi.yaml", s.route(methods{http.MethodGet: s.openapi}))
	mux.Handle("/healthz", s.route(methods{http.MethodGet: s.healthz}))
	mux.Handle("/readyz", s.route(methods{http.MethodGet: s.readyz}))
	if s.cfg.Metrics != nil {
		mux.Handle("/metrics", s.cfg.Metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &apiError{code: codeNotFound, detail: "no such endpoint: " + r.URL.Path})
	})
	// ServeMux answers a path with an empty segment by a redirect to the path without it, which
	// for /v1/channels//messages is another endpoint: an empty channel id is an invalid one.
	emptyChannel := s.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, message.ValidateChannel("channel", ""))
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.EscapedPath(), "/v1/channels//") {
			emptyChannel.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// handlerFunc is a handler that writes its success response and returns its error, which the
// router writes.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// methods maps the methods of one path to their handlers.
type methods map[string]handlerFunc

// route dispatches by method and answers other methods with a JSON 405 and an Allow header
// (ServeMux's own 405 has a plain-text body).
func (s *Server) route(ms methods) http.Handler {
	allow := make([]string, 0, len(ms))
	for m := range ms {
		allow = append(allow, m)
	}
	sort.Strings(allow)
	allowed := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := ms[r.Method]
		if !ok {
			w.Header().Set("Allow", allowed)
			s.writeError(w, r, &apiError{code: codeMethodNotAllowed, detail: r.Method + " is not allowed; allowed: " + allowed})
			return
		}
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// auth checks the bearer token, when tokens are configured: an unknown one gets 401, one whose
// scope lacks the method 403. The comparison is in constant time (auth.Tokens.Scope).
func (s *Server) auth(next http.Handler) http.Handler {
	if s.cfg.Tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The scheme is case-insensitive (RFC 9110).
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		var have auth.Scope
		if strings.EqualFold(scheme, "Bearer") {
			have = s.cfg.Tokens.Scope(token)
		}
		need := auth.Write
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			need = auth.Read
		}
		switch {
		case have == 0:
			w.Header().Set("WWW-Authenticate", `Bearer realm="chatpipe"`)
			s.writeError(w, r, &apiError{code: codeUnauthorized, detail: "missing or wrong bearer token"})
		case have&need == 0:
			s.writeError(w, r, &apiError{code: codeForbidden, detail: "this token may " + have.String() + " only; " + r.Method + " needs a token of scope " + need.String()})
		default:
			next.ServeHTTP(w, r)
		}
	})
}
