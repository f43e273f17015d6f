package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/console"
)

type consoleSettings struct {
	common
	addr, user, password, grafana, group string
	readOnly                             bool
	minIdle                              time.Duration
}

// runConsole serves the operator console until ctx ends.
func runConsole(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var s consoleSettings
	cs := config.New("flushworker console", "Serves the operator console: each flush stream's queue, its consumers, the rate limit, and the dead letters to list, replay or purge.")
	s.addValkey(cs)
	s.addLog(cs)
	cs.String(&s.addr, "CONSOLE_ADDR", "127.0.0.1:9092", "listen address of the console", config.Addr)
	cs.String(&s.user, "CONSOLE_USER", "", "HTTP Basic auth user (required with the password unless CONSOLE_ADDR is a loopback address)", nil)
	cs.Secret(&s.password, "CONSOLE_PASSWORD", "", "HTTP Basic auth password", nil)
	cs.Bool(&s.readOnly, "CONSOLE_READ_ONLY", false, "refuse every change (replay, purge) on the server")
	cs.String(&s.grafana, "GRAFANA_URL", "", "base URL of Grafana, linked from the console (empty: no links)", checkGrafana)
	cs.String(&s.group, "FLUSH_GROUP", "flushworkers", "consumer group of the flush workers", checkConsumer)
	cs.Duration(&s.minIdle, "FLUSH_MIN_IDLE", 30*time.Second, 100*time.Millisecond, 24*time.Hour, "the workers' FLUSH_MIN_IDLE: consumers idle longer are flagged")
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return err
	}
	if err := s.checkValkey(); err != nil {
		return err
	}
	if (s.user == "") != (s.password == "") {
		return &config.Error{Setting: "CONSOLE_USER", Problem: "set CONSOLE_USER and CONSOLE_PASSWORD together"}
	}
	if s.user == "" && !config.Loopback(s.addr) {
		return &config.Error{Setting: "CONSOLE_ADDR", Problem: fmt.Sprintf("%s is not a loopback address: set CONSOLE_USER and CONSOLE_PASSWORD (the console replays and purges dead letters)", s.addr)}
	}
	log := s.logger(stderr, "console")
	client, err := s.connectValkey(ctx, log)
	if err != nil {
		return err
	}
	defer client.Close()
	c, err := console.New(console.Config{Valkey: client, Layout: s.layout, Group: s.group, MinIdle: s.minIdle, ReadOnly: s.readOnly,
		User: s.user, Password: s.password, GrafanaURL: s.grafana, Timeout: s.valkey.Timeout, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return &config.Error{Setting: "CONSOLE_ADDR", Problem: err.Error()}
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute}
	log.InfoContext(ctx, "console serving", "addr", "http://"+ln.Addr().String(), "read_only", s.readOnly, "auth", s.user != "", "layout", s.layout.Name())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	err = g.Wait()
	log.Info("console stopped")
	return err
}

func checkGrafana(v string) error {
	if v == "" {
		return nil
	}
	if len(v) > 512 || !(len(v) > 7 && (v[:7] == "http://" || (len(v) > 8 && v[:8] == "https://"))) {
		return errors.New("must be an http:// or https:// URL")
	}
	return nil
}
