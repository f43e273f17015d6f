package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
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

// Outcome is the result of one message of a batch.
type Outcome struct {
	Result
	Err error
}

// maxScriptBatch is the most messages one enqueue script takes: a script holds Valkey for its
// whole run (about 3 µs a message here), so a longer batch goes as several calls, still in one
// round trip.
const maxScriptBatch = 1000

// Enqueue accepts one message as a batch of one (EnqueueMany). It returns a *RateLimitedError,
// ErrBacklogFull or ErrUnavailable when the message was not accepted, and a *NotDurableError
// carrying its id when it was accepted but not confirmed durable in time.
func (s *Store) Enqueue(ctx context.Context, m Message) (Result, error) {
	o := s.EnqueueMany(ctx, m.Kind(), []Message{m})[0]
	return o.Result, o.Err
}

// EnqueueMany accepts messages of one kind. Each is judged on its own and in order, as if sent
// one by one: a known client_msg_id gets its first id back; then the rate limit; then the
// backlog cap. Outcomes come back in order. What the plans put in one slot goes in one
// enqueue.lua call per maxScriptBatch messages, all calls in one round trip (with a WAIT each
// at a durability level); in one server's layout that is all. Where the plans put the rate
// limit apart, it is taken before, in one call per user, and what was not used is given back
// after, beside the private rings that live apart (two round trips more, and the settings'
// read). A client_msg_id already accepted before the batch is then answered even when its user
// is over the limit; its token is given back, but within its batch it may have kept a later
// message of the same user from a token that was then free. (A repeat within the batch takes
// none: TestBatchMatchesModel holds both layouts to the model.)
func (s *Store) EnqueueMany(ctx context.Context, kind message.Kind, msgs []Message) []Outcome {
	out := make([]Outcome, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	plans := make([]keyspace.Plan, len(msgs))
	var who message.Message // one for the batch: a plan keeps none of it
	for i := range msgs {
		m := &msgs[i]
		who.OwnerID, who.RecipientID, who.ChannelID = m.OwnerID, m.RecipientID, m.ChannelID
		plans[i] = s.layout.Plan(s.layout.Route(kind, m.OwnerID, m.RecipientID, m.ChannelID), &who, m.ClientMsgID)
	}
	apart := plans[0].RateApart // the same for every plan of a layout
	trips := 1
	if apart {
		trips = 3
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout(trips))
	defer cancel()
	var tokens *rateTake
	if apart {
		if tokens = s.takeRate(ctx, msgs, plans, out); tokens == nil {
			return out
		}
	}
	// The enqueue: by the stream's slot, in the batch's order (ids rise with it).
	var groups [][]int
	at := map[string]int{}
	for i := range msgs {
		if tokens != nil && !tokens.goOn[i] {
			continue
		}
		g, ok := at[plans[i].Stream]
		if !ok || len(groups[g]) == maxScriptBatch {
			g = len(groups)
			at[plans[i].Stream] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], i)
	}
	calls := make([]lua.Call, len(groups))
	for j, g := range groups {
		calls[j] = s.enqueueCall(kind, plans, msgs, g)
	}
	replies, durable := s.run(ctx, lua.Enqueue, calls)
	for j, g := range groups {
		group := make([]Outcome, len(g))
		parseBatch(replies[j], group)
		markNotDurable(group, durable[j])
		for k, i := range g {
			out[i] = group[k]
		}
	}
	if apart {
		s.settle(ctx, kind, msgs, plans, tokens, out)
	}
	return out
}

// enqueueCall is the enqueue.lua call for the messages idx of msgs, whose plans share a slot:
// every key named once (see the script's header).
func (s *Store) enqueueCall(kind message.Kind, plans []keyspace.Plan, msgs []Message, idx []int) lua.Call {
	p0 := &plans[idx[0]]
	keys := keyList{names: make([]string, 0, 4+4*len(idx))}
	keys.add(p0.Counter)
	keys.add(p0.Stream)
	keys.add(p0.IndexedSince)
	meta := make([]int, 1, 1+6*len(idx))
	if !p0.RateApart {
		meta[0] = keys.add(p0.Settings)
	}
	for _, i := range idx {
		p := &plans[i]
		user := 0
		if !p.RateApart {
			n := len(keys.names)
			if user = keys.add(p.Rate[0]); user > n { // a new user: the GCRA state right after
				keys.add(p.Rate[1])
			}
		}
		meta = append(meta, user, keys.addSome(p.ClientMsg), keys.addSome(p.Rings[0]), keys.addSome(p.Rings[1]),
			keys.addSome(p.Indexes[0]), keys.addSome(p.Indexes[1]))
	}
	ids := s.ids
	if p0.Partition != "" {
		ids = p0.Partition
	}
	head := s.head[kind]
	args := make([]string, len(head), len(head)+3+len(idx))
	copy(args, head)
	args = append(args, ids, strconv.FormatInt(s.cfg.RingTTL.Milliseconds(), 10), string(msgpackInts(meta)))
	for _, i := range idx {
		args = append(args, string(msgs[i].Data))
	}
	return lua.Call{Keys: keys.names, Args: args}
}

// keyList is a script call's KEYS, each name once, with its 1-based index (as Lua sees it).
// A few names are searched in order; past keyListScan, by a map.
type keyList struct {
	names []string
	index map[string]int
}

const keyListScan = 16

// add returns name's index, appending it the first time.
func (l *keyList) add(name string) int {
	if l.index == nil {
		for i, n := range l.names {
			if n == name {
				return i + 1
			}
		}
		l.names = append(l.names, name)
		if len(l.names) > keyListScan {
			l.index = make(map[string]int, 2*len(l.names))
			for i, n := range l.names {
				l.index[n] = i + 1
			}
		}
		return len(l.names)
	}
	i, ok := l.index[name]
	if !ok {
		l.names = append(l.names, name)
		i = len(l.names)
		l.index[name] = i
	}
	return i
}

// addSome is add for a name that may be missing: 0 (false in the script) for "".
func (l *keyList) addSome(name string) int {
	if name == "" {
		return 0
	}
	return l.add(name)
}

// EnqueueCommand is the EVALSHA command line (command name first) that Enqueue sends for m,
// for tools that drive Valkey directly: make bench runs it through valkey-benchmark to measure
// the script's rate without chatpipe's client in the way. The script must be loaded first.
func (s *Store) EnqueueCommand(m Message) []string {
	kind := m.Kind()
	who := message.Message{OwnerID: m.OwnerID, RecipientID: m.RecipientID, ChannelID: m.ChannelID}
	plans := []keyspace.Plan{s.layout.Plan(s.layout.Route(kind, m.OwnerID, m.RecipientID, m.ChannelID), &who, m.ClientMsgID)}
	c := s.enqueueCall(kind, plans, []Message{m}, []int{0})
	cmd := []string{"EVALSHA", lua.Enqueue.SHA(), strconv.Itoa(len(c.Keys))}
	cmd = append(cmd, c.Keys...)
	return append(cmd, c.Args...)
}

// rateTake is what taking the rate limit apart decided: the limit read, which messages go on
// to the enqueue, and which of them took a token.
type rateTake struct {
	rl    RateLimit
	goOn  []bool
	taken []bool
	users []string         // in order of first message
	of    map[string][]int // user → its messages, in order
}

// takeRate reads the settings and then, in one round trip, takes each user's tokens for all of
// its messages (in order) and looks up each client_msg_id. It answers in out the messages that
// do not go on (rate limited; a known client_msg_id when no WAIT follows) and returns nil when
// nothing can go on (the settings could not be read).
func (s *Store) takeRate(ctx context.Context, msgs []Message, plans []keyspace.Plan, out []Outcome) *rateTake {
	rl, err := s.settings(ctx)
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return nil
	}
	t := &rateTake{rl: rl, goOn: make([]bool, len(msgs)), taken: make([]bool, len(msgs)), of: map[string][]int{}}
	var lookups valkey.Commands
	lookupAt := make([]int, len(msgs)) // index into the look-ups' replies, -1 for none
	// A repeat of a client_msg_id earlier in the batch is the earlier message's retry: it takes
	// no token and shares its fate (the enqueue answers it with the earlier one's id).
	repeatOf := make([]int, len(msgs)) // -1 for none
	first := map[string]int{}
	need := map[string]int{} // user → the tokens its messages need
	for i := range msgs {
		owner := msgs[i].OwnerID
		if t.of[owner] == nil {
			t.users = append(t.users, owner)
		}
		t.of[owner] = append(t.of[owner], i)
		lookupAt[i], repeatOf[i] = -1, -1
		c := plans[i].ClientMsg
		if j, ok := first[c]; ok && c != "" {
			repeatOf[i] = j
			continue
		}
		need[owner]++
		if c != "" {
			first[c] = i
			lookupAt[i] = len(lookups)
			lookups = append(lookups, s.c.B().Get().Key(c).Build())
		}
	}
	rates := make([]lua.Call, len(t.users))
	cmds := make(valkey.Commands, 0, len(t.users)+len(lookups))
	for j, name := range t.users {
		rates[j] = rateCall(plans[t.of[name][0]].Rate, rl, "take", need[name])
		cmds = append(cmds, lua.RateLimit.Cmd(s.c.B(), rates[j].Keys, rates[j].Args))
	}
	res := s.c.DoMulti(ctx, append(cmds, lookups...)...)
	for j, name := range t.users {
		r := res[j]
		if lua.IsNoScript(r.Error()) {
			r = lua.RateLimit.Exec(ctx, s.c, rates[j].Keys, rates[j].Args)
		}
		taken, retry, err := rateReply(r)
		k := 0 // the token of the next message that needs one
		for _, i := range t.of[name] {
			if j := repeatOf[i]; j >= 0 {
				if t.goOn[i] = t.goOn[j]; !t.goOn[i] {
					out[i] = out[j]
				}
				continue
			}
			t.taken[i] = err == nil && k < taken
			k++
			known := false
			if at := lookupAt[i]; at >= 0 {
				if id, lerr := res[len(t.users)+at].AsInt64(); lerr == nil && s.cfg.Durability == DurableNone {
					out[i].Result = Result{CacheID: id, Duplicate: true}
					continue
				} else if lerr == nil {
					known = true // a durable retry: answered by the enqueue after its WAIT
				}
			}
			switch {
			case err != nil && !known:
				out[i].Err = err
			case !t.taken[i] && !known:
				out[i].Err = &RateLimitedError{RetryAfter: retry}
			default:
				t.goOn[i] = true
			}
		}
	}
	return t
}

// settle gives back, in one round trip, the tokens of messages that were then not accepted
// (one call per user), and writes the private rings that live apart, each ring once.
func (s *Store) settle(ctx context.Context, kind message.Kind, msgs []Message, plans []keyspace.Plan, t *rateTake, out []Outcome) {
	var after valkey.Commands
	var rings ringAdds
	for _, name := range t.users {
		refund := 0
		for _, i := range t.of[name] {
			written := out[i].Err == nil || errors.Is(out[i].Err, ErrNotDurable)
			accepted := written && !out[i].Duplicate
			if t.taken[i] && !accepted {
				refund++
			}
			// Under a durability level a retry writes the rings again too: its first answer
			// may have been not_durable for them, and the 202 it gets now promises them.
			if kind == message.Private && (accepted || written && s.cfg.Durability != DurableNone) {
				rings.add(plans[i].Apart, out[i].CacheID, ringEntry(out[i].CacheID, msgs[i].Data))
			}
		}
		if refund > 0 {
			c := rateCall(plans[t.of[name][0]].Rate, t.rl, "refund", refund)
			after = append(after, lua.RateLimit.Cmd(s.c.B(), c.Keys, c.Args))
		}
	}
	// Best effort: a lost refund costs quota. Without a durability level a lost ring entry is
	// repaired by the workers; with one, the message is answered not_durable (its retry
	// writes the rings again).
	if len(after) > 0 {
		_ = s.c.DoMulti(ctx, after...)
	}
	if s.cfg.Durability == DurableNone {
		_ = rings.write(ctx, s)
	} else {
		rings.writeDurable(ctx, s, out)
	}
}

// rateCall is the ratelimit.lua call that takes (or gives back) count tokens of the user whose
// rate-limit keys are rate.
func rateCall(rate [2]string, rl RateLimit, mode string, count int) lua.Call {
	return lua.Call{Keys: rate[:],
		Args: []string{strconv.Itoa(rl.Limit), strconv.Itoa(rl.WindowSeconds), string(rl.Algorithm), mode, strconv.Itoa(count)}}
}

// apartToken is one user's token taken in a call of its own, where the plan keeps the rate
// limit apart from the stream's slot (an edit's, a reaction's): give it back when the script
// then writes nothing.
type apartToken struct {
	rate [2]string
	rl   RateLimit
}

// withToken bounds ctx for one write of plan p (three calls where p keeps the rate limit
// apart: the take, the script, a refund) and takes the user's token there (takeApart).
func (s *Store) withToken(ctx context.Context, p *keyspace.Plan) (context.Context, context.CancelFunc, *apartToken, error) {
	trips := 1
	if p.RateApart {
		trips = 3
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout(trips))
	token, err := s.takeApart(ctx, p)
	return ctx, cancel, token, err
}

// takeApart takes one token of the user of plan p when p keeps the rate limit apart (nil when
// it does not: the script takes it); a *RateLimitedError when there is none.
func (s *Store) takeApart(ctx context.Context, p *keyspace.Plan) (*apartToken, error) {
	if !p.RateApart {
		return nil, nil
	}
	rl, err := s.settings(ctx)
	if err != nil {
		return nil, err
	}
	rate := rateCall(p.Rate, rl, "take", 1)
	switch taken, retry, err := rateReply(lua.RateLimit.Exec(ctx, s.c, rate.Keys, rate.Args)); {
	case err != nil:
		return nil, err
	case taken < 1:
		return nil, &RateLimitedError{RetryAfter: retry}
	}
	return &apartToken{rate: p.Rate, rl: rl}, nil
}

// giveBack returns the token, when one was taken apart; best effort: a lost refund costs quota.
func (t *apartToken) giveBack(ctx context.Context, s *Store) {
	if t != nil {
		refund := rateCall(t.rate, t.rl, "refund", 1)
		_ = lua.RateLimit.Exec(ctx, s.c, refund.Keys, refund.Args)
	}
}

// rateReply reads ratelimit.lua's answer to a take: the tokens taken, and the wait before the
// next one when not all were.
func rateReply(r valkey.ValkeyResult) (taken int, retry time.Duration, err error) {
	v, err := r.AsIntSlice()
	switch {
	case err != nil:
		return 0, 0, classify(err)
	case len(v) != 2:
		return 0, 0, fmt.Errorf("rate limit: unexpected reply %v", v)
	}
	return int(v[0]), time.Duration(v[1]) * time.Millisecond, nil
}

// markNotDurable gives every accepted outcome (and retry) a *NotDurableError when the wait for
// durability fell short.
func markNotDurable(out []Outcome, durable error) {
	if durable == nil {
		return
	}
	for i := range out {
		if out[i].Err == nil {
			out[i].Err = &NotDurableError{CacheID: out[i].CacheID, Detail: durable.Error()}
		}
	}
}

// msgpackInts encodes ints in [0, 2^16) as a msgpack array for cmsgpack.unpack, 0 as false
// (an index that is not there: the scripts test it with a plain if). A batch of one has fewer
// than 128 keys, so each of its indexes is one byte (enqueue.lua reads them with string.byte)
// and none is NUL (EnqueueCommand's line can be a process argument).
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

// parseBatch fills out from one enqueue.lua reply: two values per message.
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
		return Result{}, &RateLimitedError{RetryAfter: time.Duration(n) * time.Millisecond}
	case 3:
		return Result{}, ErrBacklogFull
	}
	return Result{}, fmt.Errorf("enqueue: unexpected reply code %d", code)
}
