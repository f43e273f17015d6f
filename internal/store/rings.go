package store

import (
	"context"
	"slices"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
)

// ringAdds gathers the entries of the rings that live apart (keyspace.Plan.Apart) by ring, so
// that each ring is written once. Those rings are sorted sets scored by id, trimmed to
// RecentSize; a member is the ring entry, and a ring keeps one entry a message, the one of the
// highest version (zring.lua): adding an entry again repairs a ring, and the entry of a create
// or an older edit never replaces an edit's.
type ringAdds struct {
	order []string
	by    map[string][]string
}

// add puts entry, scored by id, in rings (the unused ones "").
func (a *ringAdds) add(rings [2]string, id int64, entry string) {
	for _, ring := range rings {
		if ring == "" {
			continue
		}
		if a.by == nil {
			a.by = map[string][]string{}
		}
		if a.by[ring] == nil {
			a.order = append(a.order, ring)
		}
		a.by[ring] = append(a.by[ring], strconv.FormatInt(id, 10), entry)
	}
}

// write runs one zring.lua call per ring — the adds, the trim, the idle TTL (RingTTL) renewed —
// in one pipelined round trip, and returns the first error, classified.
func (a *ringAdds) write(ctx context.Context, s *Store) error {
	if len(a.order) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for _, r := range lua.ZRing.ExecMulti(ctx, s.c, a.calls(s, false)) {
		if err := r.Error(); err != nil {
			return classify(err)
		}
	}
	return nil
}

// writeDurable runs the calls of write each followed by the durability level's WAIT
// (durableExec) and marks not durable every outcome of out whose message is in a ring that was
// not written or fell short.
func (a *ringAdds) writeDurable(ctx context.Context, s *Store, out []Outcome) {
	if len(a.order) == 0 {
		return
	}
	res, durable := s.durableExec(ctx, lua.ZRing, a.calls(s, true))
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
			out[i].Err = &NotDurableError{CacheID: out[i].CacheID, Detail: "a private ring: " + err.Error()}
		}
	}
}

// calls is one zring.lua call per ring; durable: a WAIT follows each.
func (a *ringAdds) calls(s *Store, durable bool) []lua.Call {
	calls := make([]lua.Call, len(a.order))
	head := []string{strconv.Itoa(s.cfg.RecentSize), strconv.FormatInt(s.cfg.RingTTL.Milliseconds(), 10), flag(durable)}
	for i, ring := range a.order {
		calls[i] = lua.Call{Keys: []string{ring}, Args: append(slices.Clone(head), a.by[ring]...)}
	}
	return calls
}

// ringEntry is the ring entry of message data with id, as the enqueue script builds it.
func ringEntry(id int64, data []byte) string {
	return string(message.AppendEnvelope(make([]byte, 0, 60+len(data)), id, id, data))
}

// privatePlan is the plan of a private message of known users: where their rings are.
func (s *Store) privatePlan(m *message.Message) keyspace.Plan {
	return s.layout.Plan(s.layout.Route(message.Private, m.OwnerID, m.RecipientID, ""), m, "")
}

// KeepsRingsApart reports whether the layout keeps private rings in slots of their own, written
// after the enqueue: only then is there anything for RepairRings to repair.
func (s *Store) KeepsRingsApart() bool {
	return s.privatePlan(&message.Message{OwnerID: "a", RecipientID: "b"}).Apart[0] != ""
}

// RepairRings adds written private messages to their users' rings that live apart again, with
// their ring entries as the flush stream holds them (the members ingest wrote, byte for byte,
// so an entry already there is not doubled), in one pipelined round trip. The workers call it
// before they ack, so a ring that missed a message when ingest stopped between the enqueue and
// the ring write gets it. Public messages, and rings written by the enqueue itself, are
// skipped.
func (s *Store) RepairRings(ctx context.Context, recs []message.Record, entries []string) error {
	var rings ringAdds
	for i, r := range recs {
		if r.Message.RecipientID == "" || i >= len(entries) || entries[i] == "" {
			continue
		}
		p := s.privatePlan(&r.Message)
		rings.add(p.Apart, r.CacheID, entries[i])
	}
	return rings.write(ctx, s)
}

// ForgetPrivate removes deleted private messages (with their users) from the users' rings, in
// one pipelined round trip each for the lists (unring.lua) and the sorted sets
// (ZREMRANGEBYSCORE on the id); the workers call it once PostgreSQL applied the deletions.
func (s *Store) ForgetPrivate(ctx context.Context, recs []message.Record) error {
	var lists []lua.Call
	var sorted valkey.Commands
	for _, r := range recs {
		p := s.privatePlan(&r.Message)
		id := strconv.FormatInt(r.CacheID, 10)
		if keys := present(p.Rings); len(keys) > 0 {
			lists = append(lists, lua.Call{Keys: keys, Args: []string{id}})
		}
		for _, ring := range present(p.Apart) {
			sorted = append(sorted, s.c.B().Zremrangebyscore().Key(ring).Min(id).Max(id).Build())
		}
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if len(lists) > 0 {
		for _, r := range lua.Unring.ExecMulti(ctx, s.c, lists) {
			if err := r.Error(); err != nil {
				return classify(err)
			}
		}
	}
	return s.doAll(ctx, sorted)
}

// present are the names of keys that are there.
func present(keys [2]string) []string {
	switch {
	case keys[0] == "":
		return nil
	case keys[1] == "":
		return keys[:1]
	}
	return keys[:]
}
