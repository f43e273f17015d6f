package lua

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"
	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

var (
	//go:embed part_ratelimit.lua
	partRateLimitSrc string
	//go:embed zring.lua
	zringSrc string
	//go:embed part_enqueue.lua
	partEnqueueSrc string
)

// Partitioned runs chatpipe's operations in the partitioned layout (keyspace.Partitioned), where
// every script touches one slot, so that it runs on Valkey Cluster as on one server. A message
// takes two round trips (rate limit on the user's slot, then the enqueue on its partition's),
// a private one a third (its two rings, on the users' slots).
//
// Durability levels apply per partition group and per private ring (durableExec): a private
// message is answered 202 once its entry and both its rings are on the replicas. The workers
// repair the rings of messages whose ring write never ran (RepairRings).
type Partitioned struct {
	c         valkey.Client
	cfg       Config
	keys      keyspace.Partitioned
	rateLimit *Script
	enqueue   *Script
	delete    *Script
	edit      *Script
	zring     *Script
}

// NewPartitioned returns the operations of the partitioned layout keys on c; cfg.Layout is not
// used (Open passes its own).
func NewPartitioned(c valkey.Client, keys keyspace.Partitioned, cfg Config) (*Partitioned, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Partitioned{c: c, cfg: cfg, keys: keys,
		rateLimit: NewScript("part_ratelimit", commonSrc, partRateLimitSrc),
		enqueue:   NewScript("part_enqueue", entrySrc, batchSrc, partEnqueueSrc),
		delete:    NewScript("delete", entrySrc, ringSrc, deleteSrc),
		edit:      NewScript("edit", commonSrc, entrySrc, ringSrc, editSrc),
		zring:     NewScript("zring", zringSrc)}, nil
}

// route is where m goes.
func (p *Partitioned) route(kind message.Kind, m Message) keyspace.Route {
	return p.keys.Route(kind, m.OwnerID, m.RecipientID, m.ChannelID)
}

// settings reads the shared rate limit. It is read on every message (one more round trip):
// a cached copy would let a replica apply an old limit after PUT /v1/rate-limit.
func (p *Partitioned) settings(ctx context.Context) (RateLimit, error) {
	return readRateLimit(ctx, p.c, p.keys.RateSettings(), p.cfg.DefaultRate)
}

// SetRateLimit stores the shared rate limit.
func (p *Partitioned) SetRateLimit(ctx context.Context, rl RateLimit) error {
	if err := rl.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	cmd := p.c.B().Hset().Key(p.keys.RateSettings()).FieldValue().
		FieldValue("limit", strconv.Itoa(rl.Limit)).
		FieldValue("window_seconds", strconv.Itoa(rl.WindowSeconds)).
		FieldValue("algorithm", string(rl.Algorithm)).Build()
	return classify(p.c.Do(ctx, cmd).Error())
}

// rateCall is the part_ratelimit.lua call that takes (or gives back) count tokens of user.
func (p *Partitioned) rateCall(user string, rl RateLimit, mode string, count int) Call {
	return Call{Keys: []string{p.keys.RateLimit(user), p.keys.RateLimitGCRA(user)},
		Args: []string{strconv.Itoa(rl.Limit), strconv.Itoa(rl.WindowSeconds), string(rl.Algorithm), mode, strconv.Itoa(count)}}
}

// rateReply reads part_ratelimit.lua's answer to a take: the tokens taken, and the wait before
// the next one when not all were.
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

// Enqueue accepts one message, as a batch of one (EnqueueMany).
func (p *Partitioned) Enqueue(ctx context.Context, m Message) (Result, error) {
	o := p.EnqueueMany(ctx, m.Kind(), []Message{m})[0]
	return o.Result, o.Err
}

// durableExec runs sc for each call followed by the WAIT (or WAITAOF) of the durability level,
// each call on a dedicated connection to its slot's primary, at most durableConns at once;
// valkey-go's dedicated client returns a MOVED as an error instead of following it, so that a
// WAIT is never answered by another node than the writes'. It returns each call's reply and
// nil, or the error of a WAIT that fell short.
func (p *Partitioned) durableExec(ctx context.Context, sc *Script, calls []Call) ([]valkey.ValkeyResult, []error) {
	res := make([]valkey.ValkeyResult, len(calls))
	durable := make([]error, len(calls))
	var g errgroup.Group
	g.SetLimit(durableConns)
	for j, c := range calls {
		g.Go(func() error {
			err := p.c.Dedicated(func(dc valkey.DedicatedClient) error {
				run := func(script valkey.Completed) {
					r := dc.DoMulti(ctx, script, waitCommand(dc.B(), p.cfg))
					res[j], durable[j] = r[0], durableError(p.cfg, r[1])
				}
				run(dc.B().Evalsha().Sha1(sc.sha).Numkeys(int64(len(c.Keys))).Key(c.Keys...).Arg(c.Args...).Build())
				if isNoScript(res[j].Error()) { // nothing ran; the source runs and caches it
					run(dc.B().Eval().Script(sc.src).Numkeys(int64(len(c.Keys))).Key(c.Keys...).Arg(c.Args...).Build())
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

// Load does nothing: a SCRIPT LOAD carries no key, and on a cluster it would reach one node of
// many. Each script loads on a node at its first use there (Script.Exec).
func (p *Partitioned) Load(context.Context) error { return nil }

// RepairRings adds written private messages to their users' rings again, with their ring
// entries as the flush stream holds them (the members ingest wrote, byte for byte, so an entry
// already there is not doubled), in one pipelined round trip. The workers call it before they
// ack, so a ring that missed a message when ingest stopped between the enqueue and the ring
// write gets it. Public messages are skipped: their ring shard is written by the enqueue itself.
func (p *Partitioned) RepairRings(ctx context.Context, recs []message.Record, entries []string) error {
	var rings ringAdds
	for i, r := range recs {
		if r.Message.RecipientID == "" || i >= len(entries) || entries[i] == "" {
			continue
		}
		rings.add(p, r.Message.OwnerID, r.Message.RecipientID, r.CacheID, entries[i])
	}
	return rings.write(ctx, p)
}

// doAll sends cmds in one pipelined round trip and returns the first error, classified.
func (p *Partitioned) doAll(ctx context.Context, cmds valkey.Commands) error {
	if len(cmds) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	for _, r := range p.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return classify(err)
		}
	}
	return nil
}

// Recent returns up to limit of the newest messages of the timeline tl, oldest first.
func (p *Partitioned) Recent(ctx context.Context, tl message.Timeline, limit int) ([]string, error) {
	switch ring := p.keys.ChannelRing(tl.Channel); {
	case tl.Kind == message.Private:
		return p.RecentPrivate(ctx, tl.User, limit)
	case ring != "":
		if limit < 1 || limit > p.cfg.RecentSize {
			limit = p.cfg.RecentSize
		}
		return newestOfList(ctx, p.c, p.cfg.Timeout, ring, limit)
	}
	return p.RecentPublic(ctx, limit)
}

// RecentPublic returns up to limit of the newest public messages, oldest first: the merge of
// every shard's newest limit, which holds the limit newest overall.
func (p *Partitioned) RecentPublic(ctx context.Context, limit int) ([]string, error) {
	if limit < 1 || limit > p.cfg.RecentSize {
		limit = p.cfg.RecentSize
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	cmds := make(valkey.Commands, p.keys.Partitions())
	for k := range cmds {
		cmds[k] = p.c.B().Lrange().Key(p.keys.PublicRing(k)).Start(-int64(limit)).Stop(-1).Build()
	}
	type item struct {
		id    int64
		entry string
	}
	var all []item
	for _, r := range p.c.DoMulti(ctx, cmds...) {
		v, err := r.AsStrSlice()
		if err != nil {
			return nil, classify(err)
		}
		for _, e := range v {
			var head struct {
				CacheID int64 `json:"cache_id"`
			}
			if json.Unmarshal([]byte(e), &head) == nil {
				all = append(all, item{head.CacheID, e})
			}
		}
	}
	slices.SortFunc(all, func(a, b item) int { return cmp.Compare(a.id, b.id) })
	if len(all) > limit {
		all = all[len(all)-limit:]
	}
	out := make([]string, len(all))
	for i, it := range all {
		out[i] = it.entry
	}
	return out, nil
}

// RecentPrivate returns up to limit of a user's newest private messages, oldest first.
func (p *Partitioned) RecentPrivate(ctx context.Context, user string, limit int) ([]string, error) {
	if limit < 1 || limit > p.cfg.RecentSize {
		limit = p.cfg.RecentSize
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	v, err := p.c.Do(ctx, p.c.B().Zrange().Key(p.keys.PrivateRing(user)).Min(strconv.Itoa(-limit)).Max("-1").Build()).AsStrSlice()
	if err != nil {
		return nil, classify(err)
	}
	return v, nil
}

// String names the layout, for logs.
func (p *Partitioned) String() string {
	return fmt.Sprintf("partitioned (%d partitions)", p.keys.Partitions())
}

// RateLimit returns the shared rate limit, the defaults filling in what the hash lacks.
func (p *Partitioned) RateLimit(ctx context.Context) (RateLimit, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return p.settings(ctx)
}

// Ping checks that Valkey answers (on a cluster: the node the client picks).
func (p *Partitioned) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	return classify(p.c.Do(ctx, p.c.B().Ping().Build()).Error())
}

// Probe writes a short-lived key in every partition's slot, so on every primary that holds a
// partition: store.ErrFull while any of them refuses writes for memory.
func (p *Partitioned) Probe(ctx context.Context) error {
	cmds := make(valkey.Commands, p.keys.Partitions())
	for k := range cmds {
		cmds[k] = p.c.B().Set().Key(p.keys.Probe(k)).Value("1").PxMilliseconds(1000).Build()
	}
	return p.doAll(ctx, cmds)
}

// DeletePublic deletes a public message from its partition's ring shard and records the
// deletion on its partition's flush stream (delete.lua). The partition comes from the id.
func (p *Partitioned) DeletePublic(ctx context.Context, channel string, id int64) error {
	return p.deleteIn(ctx, message.Public, id, "", "", channel)
}

// DeletePrivate records the deletion of a private message on its partition's flush stream,
// then removes it from the rings of owner and recipient when they are known (else the worker
// does, once PostgreSQL names them).
func (p *Partitioned) DeletePrivate(ctx context.Context, id int64, owner, recipient string) error {
	if err := p.deleteIn(ctx, message.Private, id, owner, recipient, ""); err != nil {
		return err
	}
	if owner == "" {
		return nil
	}
	return p.ForgetPrivate(ctx, []message.Record{{CacheID: id, Message: message.Message{OwnerID: owner, RecipientID: recipient}}})
}

func (p *Partitioned) deleteIn(ctx context.Context, kind message.Kind, id int64, owner, recipient, channel string) error {
	r, ok := p.keys.RouteOf(kind, channel, id)
	if !ok || p.keys.Sequence(id) < 1 {
		return store.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	keys := []string{r.Counter, r.Stream, r.PendingDeletes}
	if r.Ring != "" {
		keys = append(keys, r.Ring)
	}
	args := []string{strconv.FormatInt(id, 10), strconv.FormatInt(p.cfg.BacklogCap, 10), strconv.FormatInt(p.keys.Sequence(id), 10), owner, recipient, channel}
	return deleteResult(p.delete.Exec(ctx, p.c, keys, args))
}

// ForgetPrivate removes deleted private messages from their users' rings (ZREMRANGEBYSCORE on
// the id), in one pipelined round trip.
func (p *Partitioned) ForgetPrivate(ctx context.Context, recs []message.Record) error {
	var cmds valkey.Commands
	for _, r := range recs {
		id := strconv.FormatInt(r.CacheID, 10)
		for _, ring := range privateRings(p.keys.PrivateRing, r.Message.OwnerID, r.Message.RecipientID) {
			cmds = append(cmds, p.c.B().Zremrangebyscore().Key(ring).Min(id).Max(id).Build())
		}
	}
	return p.doAll(ctx, cmds)
}

// enqueueCall is the part_enqueue.lua call for msgs, all of kind on route r.
func (p *Partitioned) enqueueCall(kind message.Kind, r keyspace.Route, msgs []Message) Call {
	ring := r.Ring
	if ring == "" {
		ring = r.Stream // private rings are on their users' slots
	}
	keys := &keyList{names: []string{r.Counter, r.Stream, ring}, index: map[string]int{}}
	meta := make([]int, 1, 1+3*len(msgs))
	meta[0] = keys.add(keyspace.IndexedSince(r.Stream))
	for _, m := range msgs {
		var client int
		if m.ClientMsgID != "" {
			client = keys.add(p.keys.ClientMsg(r, m.OwnerID, m.ClientMsgID))
		}
		var ix [2]int
		for j, tl := range m.timelines(kind, p.keys.DefaultChannel()) {
			ix[j] = keys.add(keyspace.BacklogIndex(r.Stream, tl))
		}
		meta = append(meta, client, ix[0], ix[1])
	}
	args := make([]string, 0, 8+len(msgs))
	args = append(args, strconv.Itoa(p.cfg.RecentSize), strconv.FormatInt(p.cfg.BacklogCap, 10),
		strconv.FormatInt(int64(p.cfg.ClientMsgTTL/time.Second), 10), kind.String(), r.Partition,
		flag(p.cfg.Durability != DurableNone), string(msgpackInts(meta)), strconv.FormatInt(p.cfg.RingTTL.Milliseconds(), 10))
	for _, m := range msgs {
		args = append(args, string(m.Data))
	}
	return Call{Keys: keys.names, Args: args}
}

// ringAdds gathers private ring entries by ring, so that each ring is written once. The rings
// are sorted sets scored by id, trimmed to RecentSize; a member is the ring entry, and a ring
// keeps one entry a message, the one of the highest version (zring.lua): adding an entry again
// repairs a ring, and the entry of a create or an older edit never replaces an edit's.
type ringAdds struct {
	order []string
	by    map[string][]string
}

// add puts entry, scored by id, in the rings of owner and recipient (once for a self-DM).
func (a *ringAdds) add(p *Partitioned, owner, recipient string, id int64, entry string) {
	if a.by == nil {
		a.by = map[string][]string{}
	}
	for _, ring := range privateRings(p.keys.PrivateRing, owner, recipient) {
		if a.by[ring] == nil {
			a.order = append(a.order, ring)
		}
		a.by[ring] = append(a.by[ring], strconv.FormatInt(id, 10), entry)
	}
}

// write runs one zring.lua call per ring — the adds, the trim, the idle TTL (RingTTL) renewed —
// in one pipelined round trip, and returns the first error, classified.
func (a *ringAdds) write(ctx context.Context, p *Partitioned) error {
	if len(a.order) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	for _, r := range p.zring.ExecMulti(ctx, p.c, a.calls(p, false)) {
		if err := r.Error(); err != nil {
			return classify(err)
		}
	}
	return nil
}

// writeDurable runs the calls of write each followed by the durability level's WAIT
// (durableExec) and marks not durable every outcome of out whose message is in a ring that was
// not written or fell short.
func (a *ringAdds) writeDurable(ctx context.Context, p *Partitioned, out []Outcome) {
	if len(a.order) == 0 {
		return
	}
	res, durable := p.durableExec(ctx, p.zring, a.calls(p, true))
	short := map[int64]error{} // message id → why one of its rings is not durable
	for j, ring := range a.order {
		err := durable[j]
		if rerr := res[j].Error(); rerr != nil {
			err = classify(rerr)
		}
		if err == nil {
			continue
		}
		for k := 0; k < len(a.by[ring]); k += 2 { // id, entry, id, entry, …
			id, _ := strconv.ParseInt(a.by[ring][k], 10, 64)
			short[id] = err
		}
	}
	for i := range out {
		if err, ok := short[out[i].CacheID]; ok && out[i].Err == nil {
			out[i].Err = &store.NotDurableError{CacheID: out[i].CacheID, Detail: "a private ring: " + err.Error()}
		}
	}
}

// calls is one zring.lua call per ring; durable: a WAIT follows each.
func (a *ringAdds) calls(p *Partitioned, durable bool) []Call {
	calls := make([]Call, len(a.order))
	head := []string{strconv.Itoa(p.cfg.RecentSize), strconv.FormatInt(p.cfg.RingTTL.Milliseconds(), 10), flag(durable)}
	for i, ring := range a.order {
		calls[i] = Call{Keys: []string{ring}, Args: append(slices.Clone(head), a.by[ring]...)}
	}
	return calls
}

// ringEntry is the ring entry of message data with id, as the enqueue script builds it.
func ringEntry(id int64, data []byte) string {
	return string(message.AppendEnvelope(make([]byte, 0, 60+len(data)), id, id, data))
}

// EnqueueMany accepts messages of one kind in three pipelined round trips for the whole batch,
// after the settings' read; valkey-go sends each round trip's commands to their nodes at once:
//  1. one rate-limit call per user for all of its messages (tokens go to its messages in
//     order), and the look-up of each client_msg_id;
//  2. one enqueue call per partition group (with its WAIT under a durability level);
//  3. the tokens of messages not accepted given back (one call per user), and the private
//     rings, each written and trimmed once.
//
// Outcomes come back in order. A known client_msg_id is answered with its id even when its user
// is now over the limit; its token is given back, but within its batch it may have kept a later
// message of the same user from a token that was then free.
func (p *Partitioned) EnqueueMany(ctx context.Context, kind message.Kind, msgs []Message) []Outcome {
	out := make([]Outcome, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, 3*p.cfg.Timeout)
	defer cancel()
	rl, err := p.settings(ctx)
	if err != nil {
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	// Round trip 1.
	type user struct {
		msgs  []int // indexes into msgs, in order
		taken int
		retry time.Duration
		err   error
	}
	users := map[string]*user{}
	var order []string
	var lookups valkey.Commands
	lookupAt := make([]int, len(msgs)) // index into the look-ups' replies, -1 for none
	for i := range msgs {
		m := &msgs[i]
		u := users[m.OwnerID]
		if u == nil {
			u = &user{}
			users[m.OwnerID] = u
			order = append(order, m.OwnerID)
		}
		u.msgs = append(u.msgs, i)
		lookupAt[i] = -1
		if m.ClientMsgID != "" {
			lookupAt[i] = len(lookups)
			lookups = append(lookups, p.c.B().Get().Key(p.keys.ClientMsg(p.route(kind, *m), m.OwnerID, m.ClientMsgID)).Build())
		}
	}
	rates := make([]Call, len(order))
	cmds := make(valkey.Commands, 0, len(order)+len(lookups))
	for j, name := range order {
		rates[j] = p.rateCall(name, rl, "take", len(users[name].msgs))
		cmds = append(cmds, p.rateLimit.cmd(p.c, rates[j].Keys, rates[j].Args))
	}
	res := p.c.DoMulti(ctx, append(cmds, lookups...)...)
	for j, name := range order {
		r := res[j]
		if isNoScript(r.Error()) {
			r = p.rateLimit.Exec(ctx, p.c, rates[j].Keys, rates[j].Args)
		}
		u := users[name]
		u.taken, u.retry, u.err = rateReply(r)
	}
	// Who goes on: by partition, in order.
	taken := make([]bool, len(msgs))
	groups := map[keyspace.Route][]int{}
	var parts []keyspace.Route
	for _, name := range order {
		u := users[name]
		for k, i := range u.msgs {
			taken[i] = u.err == nil && k < u.taken
			known := false
			if at := lookupAt[i]; at >= 0 {
				if id, err := res[len(order)+at].AsInt64(); err == nil && p.cfg.Durability == DurableNone {
					out[i].Result = Result{CacheID: id, Duplicate: true}
					continue
				} else if err == nil {
					known = true // a durable retry: answered by the enqueue after its WAIT
				}
			}
			switch {
			case u.err != nil && !known:
				out[i].Err = u.err
				continue
			case !taken[i] && !known:
				out[i].Err = &store.RateLimitedError{RetryAfter: u.retry}
				continue
			}
			part := p.route(kind, msgs[i])
			if groups[part] == nil {
				parts = append(parts, part)
			}
			groups[part] = append(groups[part], i)
		}
	}
	// Round trip 2.
	calls := make([]Call, len(parts))
	for j, part := range parts {
		slices.Sort(groups[part]) // the batch's order within a partition: ids rise with it
		group := make([]Message, len(groups[part]))
		for k, i := range groups[part] {
			group[k] = msgs[i]
		}
		calls[j] = p.enqueueCall(kind, part, group)
	}
	var replies []valkey.ValkeyResult
	durable := make([]error, len(calls))
	if p.cfg.Durability != DurableNone {
		replies, durable = p.durableExec(ctx, p.enqueue, calls)
	} else if len(calls) > 0 {
		replies = p.enqueue.ExecMulti(ctx, p.c, calls)
	}
	for j, part := range parts {
		group := make([]Outcome, len(groups[part]))
		parseBatch(replies[j], group)
		markNotDurable(group, durable[j])
		for k, i := range groups[part] {
			out[i] = group[k]
		}
	}
	// Round trip 3.
	var after valkey.Commands
	var rings ringAdds
	for _, name := range order {
		u := users[name]
		refund := 0
		for _, i := range u.msgs {
			written := out[i].Err == nil || errors.Is(out[i].Err, store.ErrNotDurable)
			accepted := written && !out[i].Duplicate
			if taken[i] && !accepted {
				refund++
			}
			// Under a durability level a retry writes the rings again too: its first answer
			// may have been not_durable for them, and the 202 it gets now promises them.
			if kind == message.Private && (accepted || written && p.cfg.Durability != DurableNone) {
				m := msgs[i]
				rings.add(p, m.OwnerID, m.RecipientID, out[i].CacheID, ringEntry(out[i].CacheID, m.Data))
			}
		}
		if refund > 0 {
			c := p.rateCall(name, rl, "refund", refund)
			after = append(after, p.rateLimit.cmd(p.c, c.Keys, c.Args))
		}
	}
	// Best effort: a lost refund costs quota. Without a durability level a lost ring entry is
	// repaired by the workers; with one, the message is answered not_durable (its retry
	// writes the rings again).
	if len(after) > 0 {
		_ = p.c.DoMulti(ctx, after...)
	}
	if p.cfg.Durability == DurableNone {
		_ = rings.write(ctx, p)
	} else {
		rings.writeDurable(ctx, p, out)
	}
	return out
}
