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
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
)

var (
	//go:embed part_ratelimit.lua
	partRateLimitSrc string
	//go:embed part_enqueue.lua
	partEnqueueSrc string
)

// Partitioned runs chatpipe's operations in the partitioned layout (keyspace.Partitioned), where
// every script touches one slot, so that it runs on Valkey Cluster as on one server. A message
// takes two round trips (rate limit on the user's slot, then the enqueue on its partition's),
// a private one a third (its two rings, on the users' slots).
//
// Durability levels apply per partition group (enqueueDurable). Private rings are written after
// the enqueue and repaired by the workers (RepairRings).
type Partitioned struct {
	c         valkey.Client
	cfg       Config
	keys      keyspace.Partitioned
	rateLimit *Script
	enqueue   *Script
	delete    *Script
}

// NewPartitioned returns the operations of the partitioned layout on c. cfg.Keys is not used.
func NewPartitioned(c valkey.Client, keys keyspace.Partitioned, cfg Config) (*Partitioned, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Partitioned{c: c, cfg: cfg, keys: keys,
		rateLimit: NewScript("part_ratelimit", commonSrc, partRateLimitSrc),
		enqueue:   NewScript("part_enqueue", partEnqueueSrc),
		delete:    NewScript("delete", ringSrc, deleteSrc)}, nil
}

// partition is the partition of m.
func (p *Partitioned) partition(m Message) int {
	if m.Kind == keyspace.Private {
		return p.keys.PrivatePartition(m.OwnerID, m.RecipientID)
	}
	return p.keys.PublicPartition(m.OwnerID)
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

func (p *Partitioned) rateCall(m Message, rl RateLimit, mode string) ([]string, []string) {
	return []string{p.keys.RateLimit(m.OwnerID), p.keys.RateLimitGCRA(m.OwnerID)},
		[]string{strconv.Itoa(rl.Limit), strconv.Itoa(rl.WindowSeconds), string(rl.Algorithm), mode}
}

// Enqueue accepts one message: the rate limit (with, for a client_msg_id, a look for an earlier
// acceptance in the same round trip), then the enqueue on the message's partition, then, for a
// private message, its rings — EnqueueMany's three round trips for one message. A message not
// accepted gives its token back and takes no id; one accepted but not confirmed durable comes
// with a *NotDurableError.
func (p *Partitioned) Enqueue(ctx context.Context, m Message) (Result, error) {
	o := p.EnqueueMany(ctx, m.Kind, []Message{m})[0]
	return o.Result, o.Err
}

// enqueueDurable runs the enqueue calls grouped by partition, each group followed by the WAIT
// (or WAITAOF) of the durability level on a dedicated connection to its partition's primary,
// the groups at once; valkey-go's dedicated client returns a MOVED as an error instead of
// following it, so that a WAIT is never answered by another node than the writes'. Outcomes
// come back in the calls' order; an accepted message not confirmed gets a *NotDurableError.
func (p *Partitioned) enqueueDurable(ctx context.Context, calls []Call) []Outcome {
	out := make([]Outcome, len(calls))
	groups := map[string][]int{} // by the sequence key, one per partition
	for i, c := range calls {
		groups[c.Keys[1]] = append(groups[c.Keys[1]], i)
	}
	var wg sync.WaitGroup
	for _, idx := range groups {
		wg.Go(func() {
			err := p.c.Dedicated(func(dc valkey.DedicatedClient) error {
				run := func(script bool) ([]valkey.ValkeyResult, error) {
					cmds := make(valkey.Commands, 0, len(idx)+1)
					for _, i := range idx {
						c := calls[i]
						if script {
							cmds = append(cmds, dc.B().Evalsha().Sha1(p.enqueue.sha).Numkeys(int64(len(c.Keys))).Key(c.Keys...).Arg(c.Args...).Build())
						} else {
							cmds = append(cmds, dc.B().Eval().Script(p.enqueue.src).Numkeys(int64(len(c.Keys))).Key(c.Keys...).Arg(c.Args...).Build())
						}
					}
					cmds = append(cmds, waitCommand(dc.B(), p.cfg))
					res := dc.DoMulti(ctx, cmds...)
					return res[:len(idx)], durableError(p.cfg, res[len(idx)])
				}
				res, durable := run(true)
				if isNoScript(res[0].Error()) {
					res, durable = run(false) // NOSCRIPT: nothing ran; the source runs and caches it
				}
				for j, i := range idx {
					out[i] = outcome(res[j], durable)
				}
				return nil
			})
			if err != nil {
				for _, i := range idx {
					out[i].Err = classify(err)
				}
			}
		})
	}
	wg.Wait()
	return out
}

// RepairRings adds written private messages to their users' rings again, with their ring
// entries as the flush stream holds them (the members ingest wrote, byte for byte, so an entry
// already there is not doubled), in one pipelined round trip. The workers call it before they
// ack, so a ring that missed a message when ingest stopped between the enqueue and the ring
// write gets it. Public messages are skipped: their ring shard is written by the enqueue itself.
func (p *Partitioned) RepairRings(ctx context.Context, recs []message.Record, entries []string) error {
	var cmds valkey.Commands
	for i, r := range recs {
		if r.Message.RecipientID == "" || i >= len(entries) || entries[i] == "" {
			continue
		}
		cmds = append(cmds, p.ringsFor(r.Message.OwnerID, r.Message.RecipientID, r.CacheID, entries[i])...)
	}
	return p.doAll(ctx, cmds)
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
// partition: ErrFull while any of them refuses writes for memory.
func (p *Partitioned) Probe(ctx context.Context) error {
	cmds := make(valkey.Commands, p.keys.Partitions())
	for k := range cmds {
		cmds[k] = p.c.B().Set().Key(p.keys.Probe(k)).Value("1").PxMilliseconds(1000).Build()
	}
	return p.doAll(ctx, cmds)
}

// DeletePublic deletes a public message from its partition's ring shard and records the
// deletion on its partition's flush stream (delete.lua). The partition comes from the id.
func (p *Partitioned) DeletePublic(ctx context.Context, id int64) error {
	return p.deleteIn(ctx, keyspace.Public, id, "", "")
}

// DeletePrivate records the deletion of a private message on its partition's flush stream,
// then removes it from the rings of owner and recipient when they are known (else the worker
// does, once PostgreSQL names them).
func (p *Partitioned) DeletePrivate(ctx context.Context, id int64, owner, recipient string) error {
	if err := p.deleteIn(ctx, keyspace.Private, id, owner, recipient); err != nil {
		return err
	}
	if owner == "" {
		return nil
	}
	return p.ForgetPrivate(ctx, []message.Record{{CacheID: id, Message: message.Message{OwnerID: owner, RecipientID: recipient}}})
}

func (p *Partitioned) deleteIn(ctx context.Context, kind keyspace.Kind, id int64, owner, recipient string) error {
	part := p.keys.PartitionOf(id)
	if p.keys.Sequence(id) < 1 || part >= p.keys.Partitions() {
		return ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	keys := []string{p.keys.Seq(part), p.keys.Stream(part, kind), p.keys.PendingDeletes(part, kind)}
	if kind == keyspace.Public {
		keys = append(keys, p.keys.PublicRing(part))
	}
	args := []string{strconv.FormatInt(id, 10), strconv.FormatInt(p.cfg.BacklogCap, 10), strconv.FormatInt(p.keys.Sequence(id), 10), owner, recipient}
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

// enqueueCall is the part_enqueue.lua call of m in its partition.
func (p *Partitioned) enqueueCall(m Message) Call {
	part := p.partition(m)
	keys := []string{p.keys.ClientMsg(part, m.Kind, m.OwnerID, m.ClientMsgID), p.keys.Seq(part), p.keys.Stream(part, m.Kind)}
	if m.Kind == keyspace.Public {
		keys = append(keys, p.keys.PublicRing(part))
	}
	args := []string{string(m.Data), strconv.Itoa(p.cfg.RecentSize), strconv.FormatInt(p.cfg.BacklogCap, 10),
		strconv.FormatInt(int64(p.cfg.ClientMsgTTL/time.Second), 10), flag(m.ClientMsgID != ""), m.Kind.String(), strconv.Itoa(part),
		flag(p.cfg.Durability != DurableNone)}
	return Call{Keys: keys, Args: args}
}

// ringCommands are the commands that add an accepted private message to the sender's and the
// recipient's rings (once for a self-DM): sorted sets scored by id, trimmed to RecentSize. The
// member is the ring entry, the same every time, so adding it again repairs a ring and changes
// nothing else.
func (p *Partitioned) ringCommands(m Message, id int64) valkey.Commands {
	entry := `{"cache_id":` + strconv.FormatInt(id, 10) + `,"data":` + string(m.Data) + `}`
	return p.ringsFor(m.OwnerID, m.RecipientID, id, entry)
}

// ringsFor adds entry, scored by id, to the rings of owner and recipient (once for a self-DM)
// and trims each to RecentSize.
func (p *Partitioned) ringsFor(owner, recipient string, id int64, entry string) valkey.Commands {
	users := []string{owner}
	if recipient != owner {
		users = append(users, recipient)
	}
	var cmds valkey.Commands
	for _, u := range users {
		ring := p.keys.PrivateRing(u)
		cmds = append(cmds,
			p.c.B().Zadd().Key(ring).ScoreMember().ScoreMember(float64(id), entry).Build(),
			p.c.B().Zremrangebyrank().Key(ring).Start(0).Stop(int64(-p.cfg.RecentSize-1)).Build())
	}
	return cmds
}

// EnqueueMany accepts messages of one kind in three pipelined round trips for the whole batch
// (rate limits with client_msg_id look-ups, enqueues, then refunds and private rings); valkey-go
// sends each round trip's commands to their nodes at once. Outcomes come back in order.
func (p *Partitioned) EnqueueMany(ctx context.Context, kind keyspace.Kind, msgs []Message) []Outcome {
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
	// Round trip 1: a rate-limit take per message, and the look-up of its client_msg_id.
	var cmds valkey.Commands
	for i := range msgs {
		msgs[i].Kind = kind
		keys, args := p.rateCall(msgs[i], rl, "take")
		cmds = append(cmds, p.rateLimit.cmd(p.c, keys, args))
		if msgs[i].ClientMsgID != "" {
			cmds = append(cmds, p.c.B().Get().Key(p.keys.ClientMsg(p.partition(msgs[i]), kind, msgs[i].OwnerID, msgs[i].ClientMsgID)).Build())
		}
	}
	res := p.c.DoMulti(ctx, cmds...)
	taken := make([]bool, len(msgs))
	var enq []int
	var calls []Call
	pos := 0
	for i, m := range msgs {
		r := res[pos]
		pos++
		if isNoScript(r.Error()) {
			keys, args := p.rateCall(m, rl, "take")
			r = p.rateLimit.Exec(ctx, p.c, keys, args)
		}
		var prev valkey.ValkeyResult
		if m.ClientMsgID != "" {
			prev = res[pos]
			pos++
		}
		retry, err := r.AsInt64()
		if err != nil {
			out[i].Err = classify(err)
			continue
		}
		taken[i] = retry == 0
		known := false
		if m.ClientMsgID != "" {
			if id, err := prev.AsInt64(); err == nil && p.cfg.Durability == DurableNone {
				out[i].Result = Result{CacheID: id, Duplicate: true}
				continue
			} else if err == nil {
				known = true // a durable retry: answered by the enqueue after its WAIT
			}
		}
		if retry > 0 && !known {
			out[i].Err = &RateLimitedError{RetryAfter: time.Duration(retry) * time.Millisecond}
			continue
		}
		enq = append(enq, i)
		calls = append(calls, p.enqueueCall(m))
	}
	// Round trip 2: the enqueues; one that met NOSCRIPT is sent again whole (Exec). With a
	// durability level, each partition's group goes with its WAIT on a connection of its own.
	if len(calls) > 0 && p.cfg.Durability != DurableNone {
		for j, o := range p.enqueueDurable(ctx, calls) {
			out[enq[j]] = o
		}
	} else if len(calls) > 0 {
		ecmds := make(valkey.Commands, len(calls))
		for j, c := range calls {
			ecmds[j] = p.enqueue.cmd(p.c, c.Keys, c.Args)
		}
		for j, r := range p.c.DoMulti(ctx, ecmds...) {
			if isNoScript(r.Error()) {
				r = p.enqueue.Exec(ctx, p.c, calls[j].Keys, calls[j].Args)
			}
			out[enq[j]].Result, out[enq[j]].Err = parseEnqueue(r)
		}
	}
	// Round trip 3: give back the tokens of messages not accepted, and fill private rings.
	var after valkey.Commands
	for i, m := range msgs {
		accepted := (out[i].Err == nil || errors.Is(out[i].Err, ErrNotDurable)) && !out[i].Duplicate
		if taken[i] && !accepted {
			keys, args := p.rateCall(m, rl, "refund")
			after = append(after, p.rateLimit.cmd(p.c, keys, args))
		}
		if accepted && kind == keyspace.Private {
			after = append(after, p.ringCommands(m, out[i].CacheID)...)
		}
	}
	if len(after) > 0 {
		_ = p.c.DoMulti(ctx, after...) // best effort: a lost refund costs quota; a lost ring entry is repaired by the workers
	}
	return out
}
