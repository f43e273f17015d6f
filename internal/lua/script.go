package lua

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"

	"github.com/valkey-io/valkey-go"
)

// Script is one Lua script, called by SHA. Valkey forgets scripts on restart (or SCRIPT FLUSH),
// so a NOSCRIPT reply loads the script and runs the call again: NOSCRIPT means nothing ran,
// which makes that one retry safe even for scripts that are not idempotent.
type Script struct {
	name string
	src  string
	sha  string
}

// NewScript returns the script made of parts joined by newlines (a shared prelude first).
func NewScript(name string, parts ...string) *Script {
	src := ""
	for _, p := range parts {
		src += p + "\n"
	}
	sum := sha1.Sum([]byte(src))
	return &Script{name: name, src: src, sha: hex.EncodeToString(sum[:])}
}

// SHA is the script's SHA1, as EVALSHA names it.
func (s *Script) SHA() string { return s.sha }

// Cmd is the EVALSHA of one call.
func (s *Script) Cmd(b valkey.Builder, keys, args []string) valkey.Completed {
	return b.Evalsha().Sha1(s.sha).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// EvalCmd is the EVAL of one call: the whole source, which runs the script and caches it on
// the node of its keys.
func (s *Script) EvalCmd(b valkey.Builder, keys, args []string) valkey.Completed {
	return b.Eval().Script(s.src).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
}

// Load loads the script (SCRIPT LOAD), so that its first call needs no reload.
func (s *Script) Load(ctx context.Context, c valkey.Client) error {
	if err := c.Do(ctx, c.B().ScriptLoad().Script(s.src).Build()).Error(); err != nil {
		return fmt.Errorf("loading script %s: %w", s.name, err)
	}
	return nil
}

// IsNoScript reports whether err is Valkey's NOSCRIPT: nothing ran.
func IsNoScript(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && verr.IsNoScript()
}

// Exec runs the script once; when Valkey does not know it, it sends it whole with EVAL, which
// runs it and caches it on the node that owns its keys (a SCRIPT LOAD carries no key: on a
// cluster it would reach any node).
func (s *Script) Exec(ctx context.Context, c valkey.Client, keys, args []string) valkey.ValkeyResult {
	res := c.Do(ctx, s.Cmd(c.B(), keys, args))
	if IsNoScript(res.Error()) {
		res = c.Do(ctx, s.EvalCmd(c.B(), keys, args))
	}
	return res
}

// ExecMulti runs the script for each call in one pipelined round trip, results in order.
// Calls that met NOSCRIPT are sent again whole, one by one (Exec's EVAL, which caches the script
// on the node of their keys): that happens once per node and script.
func (s *Script) ExecMulti(ctx context.Context, c valkey.Client, calls []Call) []valkey.ValkeyResult {
	if len(calls) == 1 { // one command goes by Do, valkey-go's lighter path
		return []valkey.ValkeyResult{s.Exec(ctx, c, calls[0].Keys, calls[0].Args)}
	}
	cmds := make(valkey.Commands, len(calls))
	for i, cl := range calls {
		cmds[i] = s.Cmd(c.B(), cl.Keys, cl.Args)
	}
	res := c.DoMulti(ctx, cmds...)
	for i, r := range res {
		if IsNoScript(r.Error()) {
			res[i] = s.Exec(ctx, c, calls[i].Keys, calls[i].Args)
		}
	}
	return res
}

// Call is the KEYS and ARGV of one run of a script.
type Call struct {
	Keys, Args []string
}
