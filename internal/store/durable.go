package store

import (
	"context"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"
	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/lua"
)

// run runs sc for each call, in one pipelined round trip, or at a durability level each call
// followed by its WAIT (durableExec). It returns each call's reply and, per call, nil or why
// its write is not known to be durable.
func (s *Store) run(ctx context.Context, sc *lua.Script, calls []lua.Call) ([]valkey.ValkeyResult, []error) {
	durable := make([]error, len(calls))
	if len(calls) == 0 {
		return nil, durable
	}
	if s.cfg.Durability == DurableNone {
		return sc.ExecMulti(ctx, s.c, calls), durable
	}
	return s.durableExec(ctx, sc, calls)
}

// durableExec runs sc for each call followed by the WAIT (or WAITAOF) of the durability level,
// each call on a dedicated connection to its slot's primary, at most durableConns at once, so
// that the WAIT counts exactly that call's writes; valkey-go's dedicated client returns a
// MOVED as an error instead of following it, so that a WAIT is never answered by another node
// than the writes'. It returns each call's reply and nil, or the error of a WAIT that fell
// short.
func (s *Store) durableExec(ctx context.Context, sc *lua.Script, calls []lua.Call) ([]valkey.ValkeyResult, []error) {
	res := make([]valkey.ValkeyResult, len(calls))
	durable := make([]error, len(calls))
	var g errgroup.Group
	g.SetLimit(durableConns)
	for j, c := range calls {
		g.Go(func() error {
			err := s.c.Dedicated(func(dc valkey.DedicatedClient) error {
				run := func(script valkey.Completed) {
					r := dc.DoMulti(ctx, script, s.waitCommand(dc.B()))
					res[j], durable[j] = r[0], s.durableError(r[1])
				}
				run(sc.Cmd(dc.B(), c.Keys, c.Args))
				if lua.IsNoScript(res[j].Error()) { // nothing ran; the source runs and caches it
					run(sc.EvalCmd(dc.B(), c.Keys, c.Args))
				}
				return nil
			})
			if err != nil {
				res[j] = valkey.NewErrorResult(err)
			}
			return nil
		})
	}
	_ = g.Wait()
	return res, durable
}

// durableConns bounds the dedicated connections one durableExec holds at once: a batch of
// private messages between many users writes as many rings.
const durableConns = 32

// callTimeout bounds an operation of trips round trips: the Valkey timeout each, plus the
// durability wait when there is one.
func (s *Store) callTimeout(trips int) time.Duration {
	d := time.Duration(trips) * s.cfg.Timeout
	if s.cfg.Durability != DurableNone {
		d += s.cfg.DurableTimeout
	}
	return d
}

// waitCommand is the WAIT or WAITAOF of the durability level.
func (s *Store) waitCommand(b valkey.Builder) valkey.Completed {
	ms := s.cfg.DurableTimeout.Milliseconds()
	if s.cfg.Durability == DurableFsync {
		return b.Waitaof().Numlocal(1).Numreplicas(0).Timeout(ms).Build()
	}
	return b.Wait().Numreplicas(int64(s.cfg.DurableReplicas)).Timeout(ms).Build()
}

// durableError checks a WAIT or WAITAOF reply against the level; nil when durable.
func (s *Store) durableError(r valkey.ValkeyResult) error {
	cfg := s.cfg
	if err := r.Error(); err != nil {
		return fmt.Errorf("waiting for durability: %w", err)
	}
	if cfg.Durability == DurableFsync {
		v, err := r.AsIntSlice()
		if err != nil || len(v) != 2 {
			return fmt.Errorf("unexpected WAITAOF reply: %v", r)
		}
		if v[0] < 1 {
			return fmt.Errorf("not fsynced to the primary's AOF within %s", cfg.DurableTimeout)
		}
		return nil
	}
	n, err := r.AsInt64()
	if err != nil {
		return fmt.Errorf("unexpected WAIT reply: %v", r)
	}
	if n < int64(cfg.DurableReplicas) {
		return fmt.Errorf("%d of %d replicas acknowledged within %s", n, cfg.DurableReplicas, cfg.DurableTimeout)
	}
	return nil
}
