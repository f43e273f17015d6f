package history

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
)

// Reactions returns message id's reactions as PostgreSQL holds them, and the emoji user has on
// it, for a reaction to a message whose reactions are not hot in Valkey.
func (r *Reader) Reactions(ctx context.Context, kind message.Kind, id int64, user string) (counts []message.Count, version int64, mine []store.Mine, err error) {
	if r.cfg.DB == nil {
		return nil, 0, nil, ErrNoDatabase
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	raw, version, emoji, versions, err := r.cfg.DB.Reactions(ctx, kind, id, user)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("%w: %v", ErrDatabase, err)
	}
	if counts, err = message.ParseCounts(raw); err != nil {
		return nil, 0, nil, fmt.Errorf("%w: message %d: %v", ErrDatabase, id, err)
	}
	for i, e := range emoji {
		mine = append(mine, store.Mine{Emoji: e, Version: versions[i]})
	}
	return counts, version, mine, nil
}

// hot is what Valkey holds of one message's reactions (keyspace.Reactions).
type hot struct {
	found   bool
	version int64
	counts  []byte
	// mine is the viewer's emoji, each a JSON string.
	mine []string
	// knows says the hash knows who reacted (every user, or the viewer: loaded).
	knows bool
}

// readHot reads the reaction hashes of messages ids of kind (one round trip; a cluster's slots
// apart), and whether each knows viewer ("" for none).
func (r *Reader) readHot(ctx context.Context, kind message.Kind, ids []int64, viewer string) ([]hot, error) {
	out := make([]hot, len(ids))
	cmds := make(valkey.Commands, 0, len(ids))
	at := make([]int, 0, len(ids))
	fields := []string{"v", "j", "p"}
	if viewer != "" {
		fields = append(fields, "l:"+viewer, "m:"+viewer)
	}
	for i, id := range ids {
		route, ok := r.cfg.Layout.RouteOf(kind, "", id)
		if !ok {
			continue
		}
		cmds = append(cmds, r.cfg.Valkey.B().Hmget().Key(keyspace.Reactions(route.Stream, id)).Field(fields...).Build())
		at = append(at, i)
	}
	if len(cmds) == 0 {
		return out, nil
	}
	for j, res := range r.cfg.Valkey.DoMulti(ctx, cmds...) {
		vals, err := res.ToArray()
		if err != nil {
			return nil, unavailable(err)
		}
		v, err := vals[0].ToString()
		if err != nil {
			continue // no hash
		}
		h := hot{found: true}
		h.version, _ = strconv.ParseInt(v, 10, 64)
		j2, _ := vals[1].ToString()
		h.counts = []byte(cmp.Or(j2, "[]"))
		p, _ := vals[2].ToString()
		h.knows = p != "1"
		if viewer != "" {
			l, _ := vals[3].ToString()
			h.knows = h.knows || l != ""
			if m, _ := vals[4].ToString(); m != "" {
				h.mine = strings.Split(m, "\x1f")
			}
		}
		out[at[j]] = h
	}
	return out, nil
}

// Decorate returns msgs (ring entries of timeline tl's messages, as a page or recent gives
// them) with their reactions as they stand: the counts Valkey holds when it holds the
// message's, else those each entry carries from PostgreSQL (or, for an entry read from a ring
// or a stream while the hashes expire, PostgreSQL's, asked once); with viewer, "me" on the
// emoji the viewer has. msgs is not changed (a page may be shared). When PostgreSQL does not
// answer, it returns the entries with what Valkey holds, and an error wrapping ErrDatabase.
func (r *Reader) Decorate(ctx context.Context, tl message.Timeline, msgs [][]byte, viewer string) ([][]byte, error) {
	if len(msgs) == 0 {
		return msgs, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ids := make([]int64, len(msgs))
	base := make([][]byte, len(msgs))
	counts := make([][]byte, len(msgs))
	versions := make([]int64, len(msgs))
	for i, m := range msgs {
		ids[i], _ = headID(m)
		base[i], counts[i], versions[i] = message.SplitReactions(m)
	}
	hots, err := r.readHot(ctx, tl.Kind, ids, viewer)
	if err != nil {
		return nil, err
	}
	var cold []int64 // neither a hash nor counts from PostgreSQL
	for i, h := range hots {
		switch {
		case h.found && h.version >= versions[i]:
			counts[i], versions[i] = h.counts, h.version
		case !h.found && counts[i] == nil && ids[i] > 0:
			cold = append(cold, ids[i])
		}
	}
	var dbErr error
	if r.cfg.ReactionsTTL > 0 && r.cfg.DB != nil {
		cold = r.cold.unknown(tl.Kind, cold, r.cfg.NowFunc())
	} else {
		cold = nil // hashes that never expire: no hash, no reactions
	}
	if len(cold) > 0 {
		asked := r.cfg.NowFunc()
		stored, err := r.cfg.DB.Counts(ctx, tl.Kind, cold)
		if err != nil {
			dbErr = fmt.Errorf("%w: %v", ErrDatabase, err)
		} else {
			r.cold.add(tl.Kind, cold, stored, asked)
		}
		for i := range ids {
			if c, ok := stored[ids[i]]; ok && counts[i] == nil {
				counts[i], versions[i] = c.Counts, c.Version
			}
		}
	}
	if viewer != "" {
		if err := r.markMine(ctx, tl.Kind, ids, hots, counts, viewer); errors.Is(err, ErrDatabase) {
			dbErr = err
		} else if err != nil {
			return nil, err
		}
	}
	out := make([][]byte, len(msgs))
	for i := range msgs {
		out[i] = base[i]
		if len(counts[i]) > 2 { // not "[]": a message without reactions carries none
			out[i] = message.WithReactions(slices.Clip(base[i]), counts[i], versions[i])
		}
	}
	return out, dbErr
}

// markMine sets "me" on the emoji viewer has: from the hashes that know the viewer, else
// from PostgreSQL (one query for the page).
func (r *Reader) markMine(ctx context.Context, kind message.Kind, ids []int64, hots []hot, counts [][]byte, viewer string) error {
	var fromDB []int64
	for i, h := range hots {
		switch {
		case len(counts[i]) <= 2:
		case h.found && h.knows:
			counts[i] = message.MarkMine(counts[i], h.mine)
		default:
			fromDB = append(fromDB, ids[i])
		}
	}
	if len(fromDB) == 0 || r.cfg.DB == nil {
		return nil
	}
	stored, err := r.cfg.DB.Mine(ctx, kind, fromDB, viewer)
	if err != nil {
		// The counts stand; only "me" is missing where PostgreSQL had to say it.
		return fmt.Errorf("%w: %v", ErrDatabase, err)
	}
	for i, id := range ids {
		if h := hots[i]; len(stored[id]) > 0 && !(h.found && h.knows) {
			quoted := make([]string, 0, len(stored[id]))
			for e := range stored[id] {
				quoted = append(quoted, string(message.AppendJSONString(nil, e)))
			}
			counts[i] = message.MarkMine(counts[i], quoted)
		}
	}
	return nil
}

// Reactor is a user who reacted, and the version of the reaction (the cursor of the next page).
type Reactor struct {
	UserID  string
	Version int64
}

// Reactors returns up to limit users who reacted with emoji on message id of kind, oldest
// first, after the reaction of version after (0: from the first): those Valkey knows (every
// reactor while the message's hash was started in Valkey, else the users loaded into it) and,
// for the others, PostgreSQL's.
func (r *Reader) Reactors(ctx context.Context, kind message.Kind, id int64, emoji string, after int64, limit int) ([]Reactor, error) {
	route, ok := r.cfg.Layout.RouteOf(kind, "", id)
	if !ok {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	all, err := r.cfg.Valkey.Do(ctx, r.cfg.Valkey.B().Hgetall().Key(keyspace.Reactions(route.Stream, id)).Build()).AsStrMap()
	if err != nil {
		return nil, unavailable(err)
	}
	prefix := "u:" + string(message.AppendJSONString(nil, emoji)) + "\x1f"
	var out []Reactor
	loaded := map[string]bool{}
	for f, v := range all {
		if u, ok := strings.CutPrefix(f, prefix); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > after {
				out = append(out, Reactor{UserID: u, Version: n})
			}
		}
		if u, ok := strings.CutPrefix(f, "l:"); ok {
			loaded[u] = true
		}
	}
	if len(all) == 0 || all["p"] == "1" { // PostgreSQL knows the others
		if r.cfg.DB == nil {
			return nil, ErrNoDatabase
		}
		rows, err := r.cfg.DB.Reactors(ctx, kind, id, emoji, after, limit+len(loaded))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrDatabase, err)
		}
		for _, row := range rows {
			if !loaded[row.UserID] {
				out = append(out, Reactor{UserID: row.UserID, Version: row.Version})
			}
		}
	}
	slices.SortFunc(out, func(a, b Reactor) int { return cmp.Compare(a.Version, b.Version) })
	return out[:min(len(out), limit)], nil
}

// coldCache remembers the messages PostgreSQL held no reaction counts for, so that reading a
// ring asks PostgreSQL once per message, not on every read. An entry is good for half the
// hashes' TTL: a message that gains reactions after it was asked has a hash until a TTL after
// its last reaction, and the hash is read first.
type coldCache struct {
	mu   sync.Mutex
	ttl  time.Duration
	max  int
	at   map[coldKey]time.Time // until when a message is known to have none
	fifo []coldKey
}

type coldKey struct {
	kind message.Kind
	id   int64
}

// unknown returns the ids of kind not known at now to have no counts.
func (c *coldCache) unknown(kind message.Kind, ids []int64, now time.Time) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := ids[:0:0]
	for _, id := range ids {
		if until, ok := c.at[coldKey{kind, id}]; !ok || now.After(until) {
			out = append(out, id)
		}
	}
	return out
}

// add records that PostgreSQL, asked at asked, held no counts for the ids not in stored.
func (c *coldCache) add(kind message.Kind, ids []int64, stored map[int64]pg.Counts, asked time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = make(map[coldKey]time.Time)
	}
	for _, id := range ids {
		if _, ok := stored[id]; ok {
			continue
		}
		k := coldKey{kind, id}
		c.at[k] = asked.Add(c.ttl)
		c.fifo = append(c.fifo, k)
	}
	for len(c.fifo) > c.max {
		delete(c.at, c.fifo[0])
		c.fifo = c.fifo[1:]
	}
}
