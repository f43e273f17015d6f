package lua

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
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
// Work in progress for the partitioned layout: enqueue, the rings and the rate limit; the API,
// the workers and durability do not use it yet.
type Partitioned struct {
	c         valkey.Client
	cfg       Config
	keys      keyspace.Partitioned
	rateLimit *Script
	enqueue   *Script
}

// NewPartitioned returns the operations of the partitioned layout on c. cfg.Keys is not used.
func NewPartitioned(c valkey.Client, keys keyspace.Partitioned, cfg Config) (*Partitioned, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	return &Partitioned{c: c, cfg: cfg, keys: keys,
		rateLimit: NewScript("part_ratelimit", commonSrc, partRateLimitSrc),
		enqueue:   NewScript("part_enqueue", partEnqueueSrc)}, nil
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
	v, err := p.c.Do(ctx, p.c.B().Hmget().Key(p.keys.RateSettings()).Field("limit", "window_seconds", "algorithm").Build()).ToArray()
	if err != nil {
		return RateLimit{}, classify(err)
	}
	rl := p.cfg.DefaultRate
	if len(v) == 3 {
		if n, err := v[0].AsInt64(); err == nil {
			rl.Limit = int(n)
		}
		if n, err := v[1].AsInt64(); err == nil {
			rl.WindowSeconds = int(n)
		}
		if a, err := v[2].ToString(); err == nil {
			rl.Algorithm = Algorithm(a)
		}
	}
	if rl.Algorithm != GCRA {
		rl.Algorithm = Fixed
	}
	return rl, nil
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

// refund gives back the token taken for m; best effort (a lost refund costs the user one
// message of quota, never a message).
func (p *Partitioned) refund(ctx context.Context, m Message, rl RateLimit) {
	keys, args := p.rateCall(m, rl, "refund")
	_ = p.rateLimit.Exec(ctx, p.c, keys, args).Error()
}

// Enqueue accepts one message: the rate limit (with, for a client_msg_id, a look for an earlier
// acceptance in the same round trip), then the enqueue on the message's partition, then, for a
// private message, its rings. A message not accepted gives its token back and takes no id.
func (p *Partitioned) Enqueue(ctx context.Context, m Message) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*p.cfg.Timeout)
	defer cancel()
	rl, err := p.settings(ctx)
	if err != nil {
		return Result{}, err
	}
	part := p.partition(m)
	client := p.keys.ClientMsg(part, m.Kind, m.OwnerID, m.ClientMsgID)
	keys, args := p.rateCall(m, rl, "take")
	cmds := valkey.Commands{p.rateLimit.cmd(p.c, keys, args)}
	if m.ClientMsgID != "" {
		cmds = append(cmds, p.c.B().Get().Key(client).Build())
	}
	res := p.c.DoMulti(ctx, cmds...)
	if isNoScript(res[0].Error()) {
		res[0] = p.rateLimit.Exec(ctx, p.c, keys, args)
	}
	retry, err := res[0].AsInt64()
	if err != nil {
		return Result{}, classify(err)
	}
	if m.ClientMsgID != "" {
		if prev, err := res[1].AsInt64(); err == nil {
			if retry == 0 {
				p.refund(ctx, m, rl)
			}
			return Result{CacheID: prev, Duplicate: true}, nil
		} else if !valkey.IsValkeyNil(err) {
			if retry == 0 {
				p.refund(ctx, m, rl)
			}
			return Result{}, classify(err)
		}
	}
	if retry > 0 {
		return Result{}, &RateLimitedError{RetryAfter: time.Duration(retry) * time.Millisecond}
	}
	ekeys := []string{client, p.keys.Seq(part), p.keys.Stream(part, m.Kind)}
	if m.Kind == keyspace.Public {
		ekeys = append(ekeys, p.keys.PublicRing(part))
	}
	eargs := []string{string(m.Data), strconv.Itoa(p.cfg.RecentSize), strconv.FormatInt(p.cfg.BacklogCap, 10),
		strconv.FormatInt(int64(p.cfg.ClientMsgTTL/time.Second), 10), flag(m.ClientMsgID != ""), m.Kind.String(), strconv.Itoa(part)}
	out, err := parseEnqueue(p.enqueue.Exec(ctx, p.c, ekeys, eargs))
	if err != nil || out.Duplicate {
		p.refund(ctx, m, rl)
		return out, err
	}
	if m.Kind == keyspace.Private {
		if err := p.pushPrivate(ctx, m, out.CacheID); err != nil {
			// The message is accepted and on its stream; only the rings missed it.
			return out, nil
		}
	}
	return out, nil
}

// pushPrivate adds an accepted private message to the sender's and the recipient's rings
// (once for a self-DM): sorted sets scored by id, trimmed to RecentSize. The member is the
// ring entry, the same every time, so pushing it again repairs a ring and changes nothing else.
func (p *Partitioned) pushPrivate(ctx context.Context, m Message, id int64) error {
	entry := `{"cache_id":` + strconv.FormatInt(id, 10) + `,"data":` + string(m.Data) + `}`
	users := []string{m.OwnerID}
	if m.RecipientID != m.OwnerID {
		users = append(users, m.RecipientID)
	}
	var cmds valkey.Commands
	for _, u := range users {
		ring := p.keys.PrivateRing(u)
		cmds = append(cmds,
			p.c.B().Zadd().Key(ring).ScoreMember().ScoreMember(float64(id), entry).Build(),
			p.c.B().Zremrangebyrank().Key(ring).Start(0).Stop(int64(-p.cfg.RecentSize-1)).Build())
	}
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
