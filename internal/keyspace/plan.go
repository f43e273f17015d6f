package keyspace

import (
	"cmp"

	"github.com/chatpipe/chatpipe/internal/message"
)

// Plan is every key one write of a message touches, by name: its route's (counter, stream,
// dead letters, pending deletions, ring) and, around them, its users', its timelines' and its
// client_msg_id's. The layout fills it; the store reads it and never asks which layout it
// holds. Unused names are "" (fixed-size arrays: a plan costs no allocation on the hot path).
type Plan struct {
	Route
	// Settings is the shared rate-limit settings hash; Rate the owner's fixed-window counter
	// and GCRA state.
	Settings string
	Rate     [2]string
	// RateApart: the rate-limit keys live in other slots than the route's, so the limit is
	// taken in a call of its own before the enqueue, and what was not used is given back.
	RateApart bool
	// Rings are the lists in the route's slot that the enqueue pushes the message to: its
	// channel's ring (or shard), or its users' private rings when they share the slot.
	Rings [2]string
	// Apart are the private rings in slots of their own: sorted sets scored by id, written
	// after the enqueue and repaired by the workers.
	Apart [2]string
	// Indexes are the backlog indexes of the message's timelines (its channel's, or its two
	// users'), in the stream's slot beside the route's IndexedSince.
	Indexes [2]string
	// ClientMsg records the message's client_msg_id; "" without one.
	ClientMsg string
}

// newPlan is the part of a plan both layouts build alike: the timelines' backlog indexes.
// A public message naming no channel is the default channel's (def).
func newPlan(r Route, m *message.Message, def string) Plan {
	p := Plan{Route: r}
	if r.Kind == message.Private {
		p.Indexes[0] = BacklogIndex(r.Stream, message.PrivateTimeline(m.OwnerID))
		if m.RecipientID != m.OwnerID {
			p.Indexes[1] = BacklogIndex(r.Stream, message.PrivateTimeline(m.RecipientID))
		}
		return p
	}
	p.Indexes[0] = BacklogIndex(r.Stream, message.ChannelTimeline(cmp.Or(m.ChannelID, defaultChannel(def))))
	return p
}

// pair is a private message's two rings by ring, once for a self-DM, none when the users are
// unknown ("" owner: a deletion ingest could not place).
func pair(ring func(string) string, owner, recipient string) [2]string {
	switch {
	case owner == "":
		return [2]string{}
	case recipient == "" || recipient == owner:
		return [2]string{ring(owner)}
	}
	return [2]string{ring(owner), ring(recipient)}
}

// planKeys are the key builders a plan takes from a layout.
type planKeys interface {
	RateSettings() string
	RateLimit(user string) string
	RateLimitGCRA(user string) string
	PrivateRing(user string) string
	ClientMsg(r Route, ownerID, clientMsgID string) string
}

// plan is a layout's plan of a message on route r. apart says where the layout keeps a user's
// keys (rate limit, private ring): in slots of their own (the partitioned layout, each user's
// hash tag), or with everything else (the single layout, one server).
func plan(k planKeys, def string, apart bool, r Route, m *message.Message, clientMsgID string) Plan {
	p := newPlan(r, m, def)
	p.Settings, p.Rate = k.RateSettings(), [2]string{k.RateLimit(m.OwnerID), k.RateLimitGCRA(m.OwnerID)}
	p.RateApart = apart
	switch {
	case r.Kind != message.Private:
		p.Rings[0] = r.Ring
	case apart:
		p.Apart = pair(k.PrivateRing, m.OwnerID, m.RecipientID)
	default:
		p.Rings = pair(k.PrivateRing, m.OwnerID, m.RecipientID)
	}
	if clientMsgID != "" {
		p.ClientMsg = k.ClientMsg(r, m.OwnerID, clientMsgID)
	}
	return p
}

// Plan of the single layout: everything in one slot (one server), the private rings lists.
func (k Keys) Plan(r Route, m *message.Message, clientMsgID string) Plan {
	return plan(k, k.def, false, r, m, clientMsgID)
}

// Plan of the partitioned layout: the rate limit on the owner's slot, the private rings each
// on its user's, the rest on the partition's.
func (k Partitioned) Plan(r Route, m *message.Message, clientMsgID string) Plan {
	return plan(k, k.def, true, r, m, clientMsgID)
}

// Sequence of the single layout is the id itself.
func (k Keys) Sequence(id int64) int64 { return id }

// RecentRings of the single layout: the timeline's one list.
func (k Keys) RecentRings(tl message.Timeline) ([]string, bool) { return []string{k.Ring(tl)}, false }

// RecentRings of the partitioned layout: a user's sorted set, a named channel's list, or the
// default channel's shards.
func (k Partitioned) RecentRings(tl message.Timeline) ([]string, bool) {
	switch ring := k.ChannelRing(tl.Channel); {
	case tl.Kind == message.Private:
		return []string{k.PrivateRing(tl.User)}, true
	case ring != "":
		return []string{ring}, false
	}
	out := make([]string, k.p)
	for part := range out {
		out[part] = k.PublicRing(part)
	}
	return out, false
}

// ProbeKeys of the single layout: one key.
func (k Keys) ProbeKeys() []string { return []string{k.Probe()} }

// ProbeKeys of the partitioned layout: one in each partition's slot, so on every primary that
// holds one.
func (k Partitioned) ProbeKeys() []string {
	out := make([]string, k.p)
	for part := range out {
		out[part] = k.Probe(part)
	}
	return out
}

// Legacy of the single layout: the list-based cache's flush list and the stream it feeds.
func (k Keys) Legacy(kind message.Kind) (string, string) {
	return k.LegacyFlushList(kind), k.Stream(kind)
}

// Legacy: a partitioned deployment never was the list-based cache.
func (k Partitioned) Legacy(message.Kind) (string, string) { return "", "" }
