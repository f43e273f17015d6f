package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/chatpipe/chatpipe/internal/auth"
	"github.com/chatpipe/chatpipe/internal/config"
)

// tokenSource is where ingest's bearer tokens come from: INGEST_AUTH_TOKEN (one token) and
// INGEST_AUTH_TOKENS (a list with scopes), each a value or, by its _FILE form, a file that
// SIGHUP reads again.
type tokenSource struct {
	one, list         string // the values read at start
	oneFile, listFile string // their files, "" for a value given directly
}

// buildTokens builds the token set of one and list (nil: neither is set, no auth).
func buildTokens(one, list string) (*auth.Tokens, error) {
	var t, u *auth.Tokens
	var err error
	if one != "" {
		if t, err = auth.One(one); err != nil {
			return nil, &config.Error{Setting: "INGEST_AUTH_TOKEN", Problem: err.Error()}
		}
	}
	if list != "" {
		if u, err = auth.Parse(list); err != nil {
			return nil, &config.Error{Setting: "INGEST_AUTH_TOKENS", Problem: err.Error()}
		}
	}
	return auth.Join(t, u), nil
}

// reread reads the token files again (the values given directly stay as they were).
func (ts tokenSource) reread() (*auth.Tokens, error) {
	one, list := ts.one, ts.list
	var err error
	if ts.oneFile != "" {
		if one, err = config.ReadSecretFile("INGEST_AUTH_TOKEN_FILE", ts.oneFile); err != nil {
			return nil, err
		}
	}
	if ts.listFile != "" {
		if list, err = config.ReadSecretFile("INGEST_AUTH_TOKENS_FILE", ts.listFile); err != nil {
			return nil, err
		}
	}
	return buildTokens(one, list)
}

// authState is ingest's tokens in use and what reports on them.
type authState struct {
	src     tokenSource
	keyring *auth.Keyring // nil: no auth
	hup     chan os.Signal
	count   *prometheus.GaugeVec
	reloads *prometheus.CounterVec
	log     *slog.Logger
}

// startAuth builds the tokens of the settings, registers the auth metrics, warns when the API
// is open beyond loopback (INGEST_ALLOW_NO_AUTH), and starts listening for SIGHUP. Call stop
// when done.
func startAuth(ctx context.Context, s settings, reg prometheus.Registerer, log *slog.Logger) (*authState, error) {
	t, err := buildTokens(s.tokens.one, s.tokens.list)
	if err != nil {
		return nil, err
	}
	a := &authState{src: s.tokens, log: log, hup: make(chan os.Signal, 1),
		count: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chatpipe_ingest_auth_tokens",
			Help: "Bearer tokens in use, by scope (read, write, both)."}, []string{"scope"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "chatpipe_ingest_auth_reloads_total",
			Help: "Token files read again on SIGHUP, by result (ok; failed: the tokens in use stayed)."}, []string{"result"}),
	}
	open := prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatpipe_ingest_open_api",
		Help: "1 when /v1/ is served without a token on an address beyond loopback (INGEST_ALLOW_NO_AUTH=true)."})
	for _, c := range []prometheus.Collector{a.count, a.reloads, open} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	a.reloads.WithLabelValues("ok")
	a.reloads.WithLabelValues("failed")
	switch {
	case t != nil:
		a.keyring = auth.NewKeyring(t)
		a.report(ctx, "auth on", t)
	case config.Loopback(s.addr):
		log.InfoContext(ctx, "auth off: no INGEST_AUTH_TOKEN(S); the API answers loopback clients only", "addr", s.addr)
	default:
		open.Set(1)
		log.WarnContext(ctx, "INGEST_ALLOW_NO_AUTH=true: the API has no token and is reachable beyond loopback; anyone who reaches it reads every message and posts as anyone", "addr", s.addr)
	}
	signal.Notify(a.hup, syscall.SIGHUP)
	return a, nil
}

// report logs the tokens in use by scope, never the tokens, and sets the gauge.
func (a *authState) report(ctx context.Context, msg string, t *auth.Tokens) {
	read, write, both := t.Count(auth.Read), t.Count(auth.Write), t.Count(auth.Both)
	a.count.WithLabelValues("read").Set(float64(read))
	a.count.WithLabelValues("write").Set(float64(write))
	a.count.WithLabelValues("both").Set(float64(both))
	args := []any{"tokens", t.Len(), "read", read, "write", write, "both", both}
	for _, f := range []string{a.src.oneFile, a.src.listFile} {
		if f != "" {
			args = append(args, "file", f)
		}
	}
	a.log.InfoContext(ctx, msg, args...)
}

// stop stops listening for SIGHUP.
func (a *authState) stop() { signal.Stop(a.hup) }

// reloadOnSIGHUP reads the token files again on each SIGHUP until ctx ends, and puts the new
// tokens in use at once: a request checked after the swap sees only them. A file that cannot
// be read or holds no valid token list leaves the tokens in use as they were.
func (a *authState) reloadOnSIGHUP(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.hup:
		}
		// A token file held a valid list at start, so with a file there is a keyring to swap.
		if a.src.oneFile == "" && a.src.listFile == "" {
			a.log.WarnContext(ctx, "SIGHUP: no token file to read again; rotating tokens without a restart needs INGEST_AUTH_TOKENS_FILE")
			continue
		}
		t, err := a.src.reread()
		if err != nil {
			a.reloads.WithLabelValues("failed").Inc()
			a.log.ErrorContext(ctx, "SIGHUP: reading the tokens again failed; the tokens in use stay", "err", err, "tokens", a.keyring.Tokens().Len())
			continue
		}
		a.keyring.Replace(t)
		a.reloads.WithLabelValues("ok").Inc()
		a.report(ctx, "SIGHUP: tokens read again", t)
	}
}
