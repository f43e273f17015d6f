package store

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

// Store runs chatpipe's operations on Valkey — send, batch, edit, delete, recent, the rate
// limit, the rings' upkeep — in either layout: it asks the layout for each message's plan
// (keyspace.Plan, every key by name) and never which layout it holds. Where the plan puts
// everything in one slot (one server) an operation is one script call; where it puts the
// rate limit or the private rings in other slots (Valkey Cluster) the same code takes the
// limit before and writes the rings after, in one more round trip each.
type Store struct {
	c      valkey.Client
	cfg    Config
	layout keyspace.Layout
	// head are ARGV[1..8] of enqueue.lua by kind, which do not change per call.
	head [kindCount][]string
	// ids is ARGV[9] of enqueue.lua for the single layout's counter.
	ids string
}

const kindCount = len(message.Kinds)

// Open returns the store of cfg.Layout (default: the single layout, no prefix) on c.
func Open(c valkey.Client, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{c: c, cfg: cfg, layout: cfg.Layout, ids: string(cfg.IDs)}
	for _, k := range message.Kinds {
		s.head[k] = []string{
			strconv.Itoa(cfg.RecentSize),
			strconv.FormatInt(cfg.BacklogCap, 10),
			strconv.FormatInt(int64(cfg.ClientMsgTTL/time.Second), 10),
			strconv.Itoa(cfg.DefaultRate.Limit),
			strconv.Itoa(cfg.DefaultRate.WindowSeconds),
			string(cfg.DefaultRate.Algorithm),
			k.String(),
			flag(cfg.Durability != DurableNone),
		}
	}
	return s, nil
}

// Layout is the layout the store runs on.
func (s *Store) Layout() keyspace.Layout { return s.layout }

// String names the layout, for logs.
func (s *Store) String() string { return s.layout.Name() }

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Load loads every script, so that the first requests need no reload. Optional: on a cluster
// it reaches one node, and each script loads on the others at its first use there.
func (s *Store) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for _, sc := range lua.All {
		if err := sc.Load(ctx, s.c); err != nil {
			return classify(err)
		}
	}
	return nil
}

// Ping checks that Valkey answers within the timeout (on a cluster: the node the client picks).
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return classify(s.c.Do(ctx, s.c.B().Ping().Build()).Error())
}

// Probe tells readiness, after Valkey answered OOM, whether it takes writes again: it returns
// ErrFull while used memory is above 95% of maxmemory (hysteresis: right at the limit a tiny
// write passes while the next message fails) or a short-lived probe key is refused — one in
// every partition's slot, so on every primary that holds one.
func (s *Store) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := valkeyconn.ReadInfo(ctx, s.c)
	if err != nil {
		return classify(err)
	}
	if info.MaxMemory > 0 && float64(info.UsedMemory) > 0.95*float64(info.MaxMemory) {
		return fmt.Errorf("%w: %d of %d bytes used", ErrFull, info.UsedMemory, info.MaxMemory)
	}
	keys := s.layout.ProbeKeys()
	cmds := make(valkey.Commands, len(keys))
	for i, k := range keys {
		cmds[i] = s.c.B().Set().Key(k).Value("1").PxMilliseconds(1000).Build()
	}
	return s.doAll(ctx, cmds)
}

// doAll sends cmds in one pipelined round trip and returns the first error, classified.
func (s *Store) doAll(ctx context.Context, cmds valkey.Commands) error {
	if len(cmds) == 0 {
		return nil
	}
	for _, r := range s.c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return classify(err)
		}
	}
	return nil
}

// Recent returns up to limit of the newest messages of the timeline tl, oldest first, as
// stored (ring-entry JSON). limit < 1, or above the ring size, means the whole ring. A ring
// sharded by the layout is read as the merge of its shards' newest limit, which holds the
// limit newest overall.
func (s *Store) Recent(ctx context.Context, tl message.Timeline, limit int) ([]string, error) {
	if limit < 1 || limit > s.cfg.RecentSize {
		limit = s.cfg.RecentSize
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	rings, sorted := s.layout.RecentRings(tl)
	cmds := make(valkey.Commands, len(rings))
	for i, ring := range rings {
		if sorted {
			cmds[i] = s.c.B().Zrange().Key(ring).Min(strconv.Itoa(-limit)).Max("-1").Build()
		} else {
			cmds[i] = s.c.B().Lrange().Key(ring).Start(-int64(limit)).Stop(-1).Build()
		}
	}
	var res []valkey.ValkeyResult
	if len(cmds) == 1 {
		res = []valkey.ValkeyResult{s.c.Do(ctx, cmds[0])}
	} else {
		res = s.c.DoMulti(ctx, cmds...)
	}
	if len(res) == 1 {
		v, err := res[0].AsStrSlice()
		return v, classify(err)
	}
	type item struct {
		id    int64
		entry string
	}
	var all []item
	for _, r := range res {
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
	all = all[max(0, len(all)-limit):]
	out := make([]string, len(all))
	for i, it := range all {
		out[i] = it.entry
	}
	return out, nil
}

// RateLimit returns the shared rate limit, the defaults filling in what the hash lacks.
func (s *Store) RateLimit(ctx context.Context) (RateLimit, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return s.settings(ctx)
}

// settings reads the shared rate limit. Where the limit is taken apart from the enqueue it is
// read on every message (one more round trip): a cached copy would let a replica apply an old
// limit after PUT /v1/rate-limit.
func (s *Store) settings(ctx context.Context) (RateLimit, error) {
	c := s.c
	v, err := c.Do(ctx, c.B().Hmget().Key(s.layout.RateSettings()).Field("limit", "window_seconds", "algorithm").Build()).ToArray()
	if err != nil {
		return RateLimit{}, classify(err)
	}
	rl := s.cfg.DefaultRate
	if len(v) != 3 {
		return rl, fmt.Errorf("rate settings: unexpected reply of %d fields", len(v))
	}
	if n, err := v[0].AsInt64(); err == nil {
		rl.Limit = int(n)
	}
	if n, err := v[1].AsInt64(); err == nil {
		rl.WindowSeconds = int(n)
	}
	if a, err := v[2].ToString(); err == nil {
		rl.Algorithm = Algorithm(a)
	}
	if rl.Algorithm != GCRA {
		rl.Algorithm = Fixed
	}
	return rl, nil
}

// SetRateLimit stores the shared rate limit, read by every replica's next enqueue.
func (s *Store) SetRateLimit(ctx context.Context, rl RateLimit) error {
	if err := rl.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cmd := s.c.B().Hset().Key(s.layout.RateSettings()).FieldValue().
		FieldValue("limit", strconv.Itoa(rl.Limit)).
		FieldValue("window_seconds", strconv.Itoa(rl.WindowSeconds)).
		FieldValue("algorithm", string(rl.Algorithm)).Build()
	return classify(s.c.Do(ctx, cmd).Error())
}

// classify sorts errors into the classes a caller acts on: ErrFull for OOM; ErrUnavailable
// for what passes with time — no reply at all (connection refused, reset, timeout) and the
// replies of a server that cannot take writes for now (valkeyconn.IsTransient); anything else
// is returned as it is.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case valkeyconn.IsOOM(err):
		return fmt.Errorf("%w: %w", ErrFull, err)
	case valkeyconn.IsTransient(err):
	default:
		if _, ok := valkey.IsValkeyErr(err); ok {
			return err
		}
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}
