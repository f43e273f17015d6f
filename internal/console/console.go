// Package console is the operator console of the flush pipeline: one page with every flush
// stream's queue state, its consumers and the shared rate limit, and the dead letters, which
// it lists, shows, replays and purges through package streams (the code behind `flushworker
// dlq`). It renders HTML on the server from embedded templates; it needs no JavaScript.
//
// Every change is a POST, refused when the console is read-only and from other origins
// (http.CrossOriginProtection); with a user and password set every request needs HTTP Basic
// auth. Polling a page costs a bounded number of cheap Valkey calls per flush stream.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/streams"
)

//go:embed templates/*.html
var templateFS embed.FS

// Config configures the console.
type Config struct {
	// Valkey and Layout are where the flush streams are. Required.
	Valkey valkey.Client
	Layout keyspace.Layout
	// Group is the flush workers' consumer group. Default "flushworkers".
	Group string
	// MinIdle flags consumers idle longer than this (the workers' FLUSH_MIN_IDLE). Default 30s.
	MinIdle time.Duration
	// ReadOnly refuses every change, on the server.
	ReadOnly bool
	// User and Password, when both set, are required by HTTP Basic auth on every request.
	User, Password string
	// GrafanaURL, when set, is linked with the dashboards' paths.
	GrafanaURL string
	// PageSize is how many dead letters a page lists. Default 50.
	PageSize int
	// Timeout bounds the Valkey calls of one request. Default 5s.
	Timeout time.Duration
	// Logger logs the changes made. Default: discarded.
	Logger *slog.Logger
}

// Console serves the console.
type Console struct {
	cfg     Config
	dl      *streams.DeadLetters
	tmpl    *template.Template
	streams []keyspace.FlushStream
	handler http.Handler
}

// New returns the console.
func New(cfg Config) (*Console, error) {
	if cfg.Valkey == nil || cfg.Layout == nil {
		return nil, errors.New("console: Valkey and Layout are required")
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("console: set both the user and the password, or neither")
	}
	if cfg.Group == "" {
		cfg.Group = "flushworkers"
	}
	if cfg.MinIdle == 0 {
		cfg.MinIdle = 30 * time.Second
	}
	if cfg.PageSize == 0 {
		cfg.PageSize = 50
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tmpl, err := template.New("").Funcs(template.FuncMap{
		"age":     age,
		"maxScan": func() int { return maxScan },
		"query":   func(v url.Values) template.URL { return template.URL(v.Encode()) },
		"entryQuery": func(stream, id string) template.URL {
			return template.URL(url.Values{"stream": {stream}, "id": {id}}.Encode())
		},
	}).ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, dl: streams.NewDeadLetters(cfg.Valkey), tmpl: tmpl, streams: cfg.Layout.FlushStreams()}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.overview)
	mux.HandleFunc("GET /dead-letters", c.deadLetters)
	mux.HandleFunc("GET /dead-letters/entry", c.entry)
	mux.HandleFunc("POST /dead-letters/action", c.action)
	var h http.Handler = mux
	h = http.NewCrossOriginProtection().Handler(h)
	h = c.auth(h)
	top := http.NewServeMux()
	// The health check answers without credentials, for probes; it tells nothing.
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	top.Handle("/", h)
	c.handler = securityHeaders(top)
	return c, nil
}

func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.handler.ServeHTTP(w, r) }

// securityHeaders keeps the pages out of frames and off other origins' scripts: they hold
// buttons that change data.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// auth requires HTTP Basic auth when a user is set, comparing hashes in constant time.
func (c *Console) auth(next http.Handler) http.Handler {
	if c.cfg.User == "" {
		return next
	}
	wantUser, wantPass := sha256.Sum256([]byte(c.cfg.User)), sha256.Sum256([]byte(c.cfg.Password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="chatpipe console", charset="UTF-8"`)
			http.Error(w, "401 unauthorized: the console needs its user and password", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// page is what every template gets.
type page struct {
	Title    string
	ReadOnly bool
	Grafana  []link
	Flash    string
	Error    string
	Data     any
}

type link struct{ Name, URL string }

func (c *Console) render(w http.ResponseWriter, status int, name string, p page) {
	p.ReadOnly = c.cfg.ReadOnly
	if g := strings.TrimRight(c.cfg.GrafanaURL, "/"); g != "" {
		p.Grafana = []link{{"Overview dashboard", g + "/d/chatpipe-overview"}, {"Worker dashboard", g + "/d/chatpipe-worker"}}
	}
	var b bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&b, name, p); err != nil {
		c.cfg.Logger.Error("console: rendering failed", "page", name, "err", err)
		http.Error(w, "500 rendering the page failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail renders an error page: 400 for bad input, 503 with Retry-After when Valkey failed.
func (c *Console) fail(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	c.render(w, status, "error.html", page{Title: http.StatusText(status), Error: msg})
}

// streamByLabel finds a flush stream by its label (message, private_message/3).
func (c *Console) streamByLabel(label string) (keyspace.FlushStream, bool) {
	for _, fs := range c.streams {
		if fs.Label() == label {
			return fs, true
		}
	}
	return keyspace.FlushStream{}, false
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), c.cfg.Timeout)
}

func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.1f min", d.Minutes())
	}
	return fmt.Sprintf("%.1f h", d.Hours())
}
