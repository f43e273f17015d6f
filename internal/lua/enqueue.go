package lua

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// Message is one message to enqueue.
type Message struct {
	// Kind selects the script, stream and rings.
	Kind keyspace.Kind
	// OwnerID is the sender; it names the rate-limit key and, for private messages, a ring.
	OwnerID string
	// RecipientID is the receiver of a private message.
	RecipientID string
	// ClientMsgID, when not empty, makes the enqueue retry-safe: the same owner and ClientMsgID
	// get the first cache id back for ClientMsgTTL.
	ClientMsgID string
	// Data is the message as a JSON object; it becomes the ring entry's "data".
	Data []byte
}

// Result is an accepted message.
type Result struct {
	// CacheID is the message's id.
	CacheID int64
	// StreamID is the flush-stream entry's id; empty for a duplicate.
	StreamID string
	// Duplicate reports a retry of an already accepted ClientMsgID: nothing new was stored.
	Duplicate bool
}

// Enqueue accepts one message: rate limit, backlog cap, id, rings and flush stream in one
// atomic step. It returns a *RateLimitedError, ErrBacklogFull or ErrUnavailable when the
// message was not accepted.
//
// With a durability level the script and its WAIT (or WAITAOF) travel in one round trip on
// one connection; a message accepted but not confirmed in time gets a *NotDurableError that
// carries its id.
func (s *Scripts) Enqueue(ctx context.Context, m Message) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	sc, c := s.enqueueCall(m)
	if s.cfg.Durability == DurableNone {
		return parseEnqueue(sc.Exec(ctx, s.c, c.Keys, c.Args))
	}
	res, durable := s.execDurable(ctx, sc, []Call{c})
	out := outcome(res[0], durable)
	return out.Result, out.Err
}

// callTimeout bounds one call: the Valkey timeout, plus the durability wait when there is one.
func (s *Scripts) callTimeout() time.Duration {
	if s.cfg.Durability == DurableNone {
		return s.cfg.Timeout
	}
	return s.cfg.Timeout + s.cfg.DurableTimeout
}

// waitCommand is the WAIT or WAITAOF of the durability level.
func (s *Scripts) waitCommand() valkey.Completed { return waitCommand(s.c.B(), s.cfg) }

func waitCommand(b valkey.Builder, cfg Config) valkey.Completed {
	ms := cfg.DurableTimeout.Milliseconds()
	if cfg.Durability == DurableFsync {
		return b.Waitaof().Numlocal(1).Numreplicas(0).Timeout(ms).Build()
	}
	return b.Wait().Numreplicas(int64(cfg.DurableReplicas)).Timeout(ms).Build()
}

// durableError checks a WAIT or WAITAOF reply against the level; nil when durable.
func (s *Scripts) durableError(r valkey.ValkeyResult) error { return durableError(s.cfg, r) }

func durableError(cfg Config, r valkey.ValkeyResult) error {
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

// execDurable runs the script for each call followed by one WAIT, in one DoMulti: a blocking
// command makes valkey-go send the whole multi on one connection of its own, so the WAIT
// counts exactly these writes. Calls that met NOSCRIPT run again, with a WAIT of their own,
// after one load. It returns the script results and nil when every WAIT was met.
func (s *Scripts) execDurable(ctx context.Context, sc *Script, calls []Call) ([]valkey.ValkeyResult, error) {
	run := func(idx []int) ([]valkey.ValkeyResult, error) {
		cmds := make(valkey.Commands, 0, len(idx)+1)
		for _, i := range idx {
			cmds = append(cmds, sc.cmd(s.c, calls[i].Keys, calls[i].Args))
		}
		cmds = append(cmds, s.waitCommand())
		res := s.c.DoMulti(ctx, cmds...)
		return res[:len(idx)], s.durableError(res[len(idx)])
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	res, durable := run(all)
	var again []int
	for i, r := range res {
		if isNoScript(r.Error()) {
			again = append(again, i)
		}
	}
	if len(again) == 0 {
		return res, durable
	}
	if err := sc.load(ctx, s.c); err != nil {
		for _, i := range again {
			res[i] = valkey.NewErrorResult(err)
		}
		return res, durable
	}
	res2, durable2 := run(again)
	for j, i := range again {
		res[i] = res2[j]
	}
	if durable == nil {
		durable = durable2
	}
	return res, durable
}

// outcome turns one script reply into an Outcome; an accepted message whose write was not
// durable gets a *NotDurableError with its id.
func outcome(r valkey.ValkeyResult, durable error) Outcome {
	var o Outcome
	o.Result, o.Err = parseEnqueue(r)
	if o.Err == nil && durable != nil {
		o.Err = &NotDurableError{CacheID: o.CacheID, Detail: durable.Error()}
	}
	return o
}

// EnqueueCommand is the EVALSHA command line (command name first) that Enqueue sends for m,
// for tools that drive Valkey directly: make bench runs it through valkey-benchmark to measure
// the script's rate without chatpipe's client in the way. The script must be loaded first.
func (s *Scripts) EnqueueCommand(m Message) []string {
	sc, c := s.enqueueCall(m)
	cmd := []string{"EVALSHA", sc.sha, strconv.Itoa(len(c.Keys))}
	cmd = append(cmd, c.Keys...)
	return append(cmd, c.Args...)
}

// Outcome is the result of one message of a batch.
type Outcome struct {
	Result
	Err error
}

// EnqueueMany enqueues messages in one pipelined round trip. Outcomes come back in order;
// each message is accepted or rejected on its own. Messages of one kind only.
func (s *Scripts) EnqueueMany(ctx context.Context, kind keyspace.Kind, msgs []Message) []Outcome {
	out := make([]Outcome, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	calls := make([]Call, len(msgs))
	var sc *Script
	for i, m := range msgs {
		m.Kind = kind
		sc, calls[i] = s.enqueueCall(m)
	}
	if s.cfg.Durability != DurableNone {
		// One WAIT for the whole batch.
		res, durable := s.execDurable(ctx, sc, calls)
		for i, r := range res {
			out[i] = outcome(r, durable)
		}
		return out
	}
	for i, r := range sc.ExecMulti(ctx, s.c, calls) {
		out[i].Result, out[i].Err = parseEnqueue(r)
	}
	return out
}

func (s *Scripts) enqueueCall(m Message) (*Script, Call) {
	k := s.cfg.Keys
	keys := make([]string, 7, 8)
	keys[0] = k.RateSettings()
	keys[1] = k.RateLimit(m.OwnerID)
	keys[2] = k.RateLimitGCRA(m.OwnerID)
	keys[3] = k.ClientMsg(m.Kind, m.OwnerID, m.ClientMsgID)
	keys[4] = k.Counter(m.Kind)
	keys[5] = k.Stream(m.Kind)
	sc := s.enqueuePublic
	if m.Kind == keyspace.Private {
		sc = s.enqueuePrivate
		keys[6] = k.PrivateRing(m.OwnerID)
		keys = append(keys, k.PrivateRing(m.RecipientID))
	} else {
		keys[6] = k.PublicRing()
	}
	args := make([]string, 0, 11)
	args = append(args, string(m.Data))
	args = append(args, s.staticArgs[m.Kind]...)
	if m.ClientMsgID != "" {
		args[4] = "1"
	} else {
		args[4] = "0"
	}
	return sc, Call{Keys: keys, Args: args}
}

func parseEnqueue(r valkey.ValkeyResult) (Result, error) {
	if err := r.Error(); err != nil {
		return Result{}, classify(err)
	}
	arr, err := r.ToArray()
	if err != nil || len(arr) == 0 {
		return Result{}, fmt.Errorf("enqueue: unexpected reply: %v", r)
	}
	code, err := arr[0].AsInt64()
	if err != nil {
		return Result{}, fmt.Errorf("enqueue: unexpected reply code: %w", err)
	}
	switch {
	case code == 0 && len(arr) == 3:
		id, err1 := arr[1].AsInt64()
		sid, err2 := arr[2].ToString()
		if err1 != nil || err2 != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected accept reply: %v", r)
		}
		return Result{CacheID: id, StreamID: sid}, nil
	case code == 1 && len(arr) == 2:
		id, err := arr[1].AsInt64()
		if err != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected duplicate reply: %w", err)
		}
		return Result{CacheID: id, Duplicate: true}, nil
	case code == 2 && len(arr) == 2:
		ms, err := arr[1].AsInt64()
		if err != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected rate-limit reply: %w", err)
		}
		return Result{}, &RateLimitedError{RetryAfter: time.Duration(ms) * time.Millisecond}
	case code == 3:
		return Result{}, ErrBacklogFull
	}
	return Result{}, fmt.Errorf("enqueue: unexpected reply code %d", code)
}
