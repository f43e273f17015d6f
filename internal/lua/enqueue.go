package lua

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// Message is one message to enqueue.
type Message struct {
	// OwnerID is the sender; it names the rate-limit key and, for private messages, a ring.
	OwnerID string
	// RecipientID is the receiver of a private message.
	RecipientID string
	// ChannelID is a public message's channel ("": the default channel).
	ChannelID string
	// ClientMsgID, when not empty, makes the enqueue retry-safe: the same owner and ClientMsgID
	// get the first cache id back for ClientMsgTTL.
	ClientMsgID string
	// Data is the message as a JSON object; it becomes the ring entry's "data".
	Data []byte
}

// timelines are the timelines m belongs to (message.Message.Timelines), channel "" being def.
func (m *Message) timelines(kind message.Kind, def string) []message.Timeline {
	mm := message.Message{OwnerID: m.OwnerID, RecipientID: m.RecipientID, ChannelID: cmp.Or(m.ChannelID, def)}
	return mm.Timelines(kind)
}

// Kind is the message's kind: private when it has a recipient (message.Validate allows one on
// private messages only). A batch gives its kind once, to EnqueueMany.
func (m *Message) Kind() message.Kind {
	if m.RecipientID != "" {
		return message.Private
	}
	return message.Public
}

// Result is an accepted message.
type Result struct {
	// CacheID is the message's id.
	CacheID int64
	// Duplicate reports a retry of an already accepted ClientMsgID: nothing new was stored.
	Duplicate bool
}

// Enqueue accepts one message: rate limit, backlog cap, id, rings and flush stream in one
// atomic step (enqueue.lua, as for a batch of one). It returns a *store.RateLimitedError,
// store.ErrBacklogFull or store.ErrUnavailable when the message was not accepted.
//
// With a durability level the script and its WAIT (or WAITAOF) travel in one round trip on
// one connection; a message accepted but not confirmed in time gets a *store.NotDurableError that
// carries its id.
func (s *Scripts) Enqueue(ctx context.Context, m Message) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	res, durable := s.exec(ctx, s.one, []Call{s.oneCall(m)})
	var out [1]Outcome
	parseBatch(res[0], out[:])
	markNotDurable(out[:], durable)
	return out[0].Result, out[0].Err
}

// oneCall is the one.lua call for m (see the script's header).
func (s *Scripts) oneCall(m Message) Call {
	kind := m.Kind()
	k, r := s.keys, s.keys.Route(kind, "", "", "")
	keys := make([]string, 0, 11)
	keys = append(keys, k.RateSettings(), r.Counter, r.Stream, k.RateLimit(m.OwnerID), k.RateLimitGCRA(m.OwnerID), keyspace.IndexedSince(r.Stream))
	for _, tl := range m.timelines(kind, k.DefaultChannel()) {
		keys = append(keys, k.Ring(tl), keyspace.BacklogIndex(r.Stream, tl))
	}
	static := s.staticArgs[kind]
	args := make([]string, len(static), len(static)+2)
	copy(args, static)
	args = append(args, string(m.Data), "0")
	if m.ClientMsgID != "" {
		keys = append(keys, k.ClientMsg(r, m.OwnerID, m.ClientMsgID))
		args[len(args)-1] = "1"
	}
	return Call{Keys: keys, Args: args}
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

// exec runs sc for each call in one round trip, followed at a durability level by one WAIT
// (execDurable); it returns the replies, and nil when the writes are durable or no level is set.
func (s *Scripts) exec(ctx context.Context, sc *Script, calls []Call) ([]valkey.ValkeyResult, error) {
	if s.cfg.Durability != DurableNone {
		return s.execDurable(ctx, sc, calls)
	}
	return sc.ExecMulti(ctx, s.c, calls), nil
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

// EnqueueCommand is the EVALSHA command line (command name first) that Enqueue sends for m,
// for tools that drive Valkey directly: make bench runs it through valkey-benchmark to measure
// the script's rate without chatpipe's client in the way. The script must be loaded first.
func (s *Scripts) EnqueueCommand(m Message) []string {
	c := s.oneCall(m)
	cmd := []string{"EVALSHA", s.one.sha, strconv.Itoa(len(c.Keys))}
	cmd = append(cmd, c.Keys...)
	return append(cmd, c.Args...)
}

// Outcome is the result of one message of a batch.
type Outcome struct {
	Result
	Err error
}

// maxScriptBatch is the most messages one enqueue script takes: a script holds Valkey for its
// whole run (about 3 µs a message here), so a longer batch goes as several calls, still in one
// round trip.
const maxScriptBatch = 1000

// EnqueueMany enqueues messages of one kind with one enqueue.lua call per maxScriptBatch
// messages, in one round trip: the settings, the backlog length and the id counter are read
// once, each user's rate limit and each ring are read and written once. Outcomes come back in
// order; each message is accepted or rejected on its own, as if sent one by one. With a
// durability level the whole batch waits once.
func (s *Scripts) EnqueueMany(ctx context.Context, kind message.Kind, msgs []Message) []Outcome {
	out := make([]Outcome, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout())
	defer cancel()
	var calls []Call
	for from := 0; from < len(msgs); from += maxScriptBatch {
		calls = append(calls, s.enqueueCall(kind, msgs[from:min(len(msgs), from+maxScriptBatch)]))
	}
	res, durable := s.exec(ctx, s.enqueue, calls)
	for j, r := range res {
		from := j * maxScriptBatch
		parseBatch(r, out[from:min(len(msgs), from+maxScriptBatch)])
	}
	markNotDurable(out, durable)
	return out
}

// enqueueCall is the enqueue.lua call for msgs, every key named once (see the script's header).
func (s *Scripts) enqueueCall(kind message.Kind, msgs []Message) Call {
	k, r := s.keys, s.keys.Route(kind, "", "", "")
	keys := newKeyList(4+2*len(msgs), k.RateSettings(), r.Counter, r.Stream)
	// Users first, each its fixed-window counter and then its GCRA state: the script reads all
	// their states in one MGET.
	users := make([]int, len(msgs))
	for i, m := range msgs {
		fixed := k.RateLimit(m.OwnerID)
		u, ok := keys.index[fixed]
		if !ok {
			u = keys.add(fixed)
			keys.add(k.RateLimitGCRA(m.OwnerID))
		}
		users[i] = u
	}
	meta := make([]int, 2, 2+6*len(msgs))
	meta[0] = (len(keys.names) - 3) / 2
	meta[1] = keys.add(keyspace.IndexedSince(r.Stream))
	for i, m := range msgs {
		client, first, second := 0, 0, 0
		var ix [2]int
		if m.ClientMsgID != "" {
			client = keys.add(k.ClientMsg(r, m.OwnerID, m.ClientMsgID))
		}
		if kind == message.Private {
			first, second = keys.add(k.PrivateRing(m.OwnerID)), keys.add(k.PrivateRing(m.RecipientID))
		} else {
			first = keys.add(k.ChannelRing(m.ChannelID))
		}
		for j, tl := range m.timelines(kind, k.DefaultChannel()) {
			ix[j] = keys.add(keyspace.BacklogIndex(r.Stream, tl))
		}
		meta = append(meta, users[i], client, first, second, ix[0], ix[1])
	}
	args := make([]string, 0, len(s.staticArgs[kind])+1+len(msgs))
	args = append(args, s.staticArgs[kind]...)
	args = append(args, string(msgpackInts(meta)))
	for _, m := range msgs {
		args = append(args, string(m.Data))
	}
	return Call{Keys: keys.names, Args: args}
}

// keyList is a script call's KEYS, each name once, with its 1-based index (as Lua sees it).
type keyList struct {
	names []string
	index map[string]int
}

func newKeyList(capacity int, fixed ...string) *keyList {
	l := &keyList{names: make([]string, 0, capacity), index: make(map[string]int, capacity)}
	for _, name := range fixed {
		l.add(name)
	}
	return l
}

// add returns name's index, appending it the first time.
func (l *keyList) add(name string) int {
	i, ok := l.index[name]
	if !ok {
		l.names = append(l.names, name)
		i = len(l.names)
		l.index[name] = i
	}
	return i
}

// markNotDurable gives every accepted outcome (and retry) a *store.NotDurableError when the wait for
// durability fell short.
func markNotDurable(out []Outcome, durable error) {
	if durable == nil {
		return
	}
	for i := range out {
		if out[i].Err == nil {
			out[i].Err = &store.NotDurableError{CacheID: out[i].CacheID, Detail: durable.Error()}
		}
	}
}

// msgpackInts encodes ints in [0, 2^16) as a msgpack array for cmsgpack.unpack, 0 as false
// (an index that is not there: the scripts test it with a plain if). A batch of one with fewer
// than 128 keys encodes without a NUL byte, so EnqueueCommand's line can be a process argument.
func msgpackInts(v []int) []byte {
	b := make([]byte, 0, 5+3*len(v))
	switch n := len(v); {
	case n < 16:
		b = append(b, 0x90|byte(n))
	case n < 1<<16:
		b = append(b, 0xdc, byte(n>>8), byte(n))
	default:
		b = append(b, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	for _, x := range v {
		switch {
		case x == 0:
			b = append(b, 0xc2)
		case x < 128:
			b = append(b, byte(x))
		case x < 256:
			b = append(b, 0xcc, byte(x))
		default:
			b = append(b, 0xcd, byte(x>>8), byte(x))
		}
	}
	return b
}

// parseBatch fills out from one enqueue.lua (or part_enqueue.lua) reply: two values per message.
func parseBatch(r valkey.ValkeyResult, out []Outcome) {
	fail := func(err error) {
		for i := range out {
			out[i] = Outcome{Err: err}
		}
	}
	if err := r.Error(); err != nil {
		fail(classify(err))
		return
	}
	v, err := r.AsIntSlice()
	if err != nil || len(v) != 2*len(out) {
		fail(fmt.Errorf("enqueue: unexpected reply of %d values for %d messages (%v)", len(v), len(out), err))
		return
	}
	for i := range out {
		out[i].Result, out[i].Err = parseOne(v[2*i], v[2*i+1])
	}
}

// parseOne reads one message's two values of an enqueue reply.
func parseOne(code, n int64) (Result, error) {
	switch code {
	case 0:
		return Result{CacheID: n}, nil
	case 1:
		return Result{CacheID: n, Duplicate: true}, nil
	case 2:
		return Result{}, &store.RateLimitedError{RetryAfter: time.Duration(n) * time.Millisecond}
	case 3:
		return Result{}, store.ErrBacklogFull
	}
	return Result{}, fmt.Errorf("enqueue: unexpected reply code %d", code)
}
