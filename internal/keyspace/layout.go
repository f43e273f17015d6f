package keyspace

import (
	"fmt"
	"strconv"

	"github.com/chatpipe/chatpipe/internal/message"
)

// Layout is a keyspace layout: Keys (single, the list-based cache's keys) or Partitioned (for
// Valkey Cluster). main picks one by KEY_LAYOUT; the code that writes, reads or consumes asks
// it for keys through this interface and never looks at which builder it holds.
//
// A timeline (the public room, a user's private messages, and next a channel) is routed inside
// the layout's fixed set of flush streams, never given a stream of its own: the workers consume
// FlushStreams, the tail and history read Shards, and both rely on that set not growing with
// the number of timelines. What tells timelines apart travels in the entries.
type Layout interface {
	// Name is single or partitioned.
	Name() string
	// Route is where a new message of kind from owner goes: to recipient for a private one, in
	// channel for a public one ("": the default channel).
	Route(kind message.Kind, owner, recipient, channel string) Route
	// RouteOf is where the message id of kind was written, with channel's ring for a public
	// one; false when no message of channel can be id (a partition out of range, or not the
	// channel's).
	RouteOf(kind message.Kind, channel string, id int64) (Route, bool)
	// ChannelRing is a channel's ring key when it is one key ("" for the default channel of the
	// partitioned layout, whose ring is sharded: Shards).
	ChannelRing(channel string) string
	// Record is the key recording the layout, and the value it must hold; "" when the layout
	// records nothing (the single one).
	Record() (key, value string)
	// Plan completes route r (from Route or RouteOf) with the keys of message m's users,
	// timelines and client_msg_id ("": none): every key a write of m touches, by name.
	Plan(r Route, m *message.Message, clientMsgID string) Plan
	// Sequence is the value the id sequence held when it gave id (below 1: no id it gave).
	Sequence(id int64) int64
	// RecentRings are the rings that hold a timeline's newest messages: one list, the shards
	// of a sharded ring (merged by id), or one sorted set scored by id (sorted).
	RecentRings(tl message.Timeline) (rings []string, sorted bool)
	// ProbeKeys are the short-lived keys written to learn whether every primary takes writes.
	ProbeKeys() []string
	// Legacy is the flush list of the list-based cache of kind and the stream it is mirrored
	// into; "" when the layout never was that cache (partitioned).
	Legacy(kind message.Kind) (list, stream string)
	// DefaultChannel is the channel of public messages that name none.
	DefaultChannel() string
	// FlushStreams lists every flush stream the workers consume.
	FlushStreams() []FlushStream
	// QueueMonitorLease is the key of the queue monitor's lease.
	QueueMonitorLease() string
	// Shards lists what the read side (history, live tail) reads of a kind.
	Shards(kind message.Kind) []Shard
	// ShardsOf lists what history reads of a timeline: the kind's shards, with a channel's
	// ring(s); only its partition for a named channel of the partitioned layout.
	ShardsOf(tl message.Timeline) []Shard
	// RateSettings is the key of the shared rate-limit settings.
	RateSettings() string
}

// The layouts of KEY_LAYOUT.
const (
	SingleLayout      = "single"
	PartitionedLayout = "partitioned"
)

// NewLayout returns the layout name (single or partitioned) under prefix with channel as its
// default channel ("": message.DefaultChannel); partitions is P of the partitioned layout.
func NewLayout(name, prefix string, partitions int, channel string) (Layout, error) {
	switch name {
	case SingleLayout:
		k, err := New(prefix)
		return k.WithDefaultChannel(channel), err
	case PartitionedLayout:
		k, err := NewPartitioned(prefix, partitions)
		return k.WithDefaultChannel(channel), err
	}
	return nil, fmt.Errorf("layout %q is not single or partitioned", name)
}

// BacklogIndex is the backlog index of timeline tl among the entries of stream: a sorted set
// in the stream's slot (its name begins with the stream's, hash tag and all), score the cache
// id, member the stream entry id, of the timeline's messages the workers have not flushed yet.
// History reads a timeline's backlog from it, not from the whole stream.
func BacklogIndex(stream string, tl message.Timeline) string {
	if tl.Kind == message.Private {
		return stream + ":ix:u:" + tl.User
	}
	return stream + ":ix:c:" + tl.Channel
}

// Edits is the hash beside stream, in its slot, of the messages whose latest edit is not known
// to be in PostgreSQL: cache id → that edit's version. The edit script reads a message's current
// version from it; the workers remove a field once its edit is written.
func Edits(stream string) string { return stream + ":edits" }

// Reactions is the hash beside stream, in its slot, of message id's reactions while they are
// hot: the emoji in first-added order, their counts, who reacted, and their version. It lives
// as long as its channel's ring after the last reaction (RING_IDLE_TTL); PostgreSQL has the rest.
func Reactions(stream string, id int64) string { return stream + ":rx:" + strconv.FormatInt(id, 10) }

// IndexedSince is the key holding the stream id of the first entry of stream written with its
// backlog indexes: the entries before it (written before the indexes existed) are scanned.
func IndexedSince(stream string) string { return stream + ":ix_since" }

// Route is where one message's keys are: its flush stream and what sits beside it (dead
// letters, pending deletions, the id counter it took its id from) and, for a public message,
// the ring (shard) holding it. A private message's rings are its users' (PrivateRing).
type Route struct {
	Kind message.Kind
	// Partition is the partition ("" in the single layout).
	Partition      string
	Counter        string
	Stream         string
	DeadLetter     string
	PendingDeletes string
	// Ring is the public ring (shard); "" for a private message.
	Ring string
	// IndexedSince is the stream's record of its first indexed entry.
	IndexedSince string
}

// Name is single.
func (k Keys) Name() string { return SingleLayout }

// Route is the single layout's one route of kind, whoever sends, with channel's ring.
func (k Keys) Route(kind message.Kind, _, _, channel string) Route {
	var r Route
	if k.shared != nil {
		r = k.shared.routes[kind]
	} else {
		r = k.route(kind)
	}
	if kind == message.Public {
		r.Ring = k.ChannelRing(channel)
	}
	return r
}

// route is the single layout's route of kind, without a ring.
func (k Keys) route(kind message.Kind) Route {
	stream := k.Stream(kind)
	return Route{Kind: kind, Counter: k.Counter(kind), Stream: stream, DeadLetter: k.DeadLetter(kind),
		PendingDeletes: k.PendingDeletes(kind), IndexedSince: IndexedSince(stream)}
}

// RouteOf is the route of kind: every id of the single layout is in it.
func (k Keys) RouteOf(kind message.Kind, channel string, _ int64) (Route, bool) {
	return k.Route(kind, "", "", channel), true
}

// Record: the single layout records nothing.
func (k Keys) Record() (string, string) { return "", "" }

// DefaultChannel is the channel of public messages that name none.
func (k Keys) DefaultChannel() string { return defaultChannel(k.def) }

// DefaultChannel is the channel of public messages that name none.
func (k Partitioned) DefaultChannel() string { return defaultChannel(k.def) }

// route is the route of partition part, with channel's ring for a public message.
func (k Partitioned) route(kind message.Kind, part int, channel string) Route {
	var r Route
	if k.shared != nil {
		r = k.shared.routes[part*len(message.Kinds)+int(kind)]
	} else {
		r = k.bareRoute(kind, part)
	}
	switch {
	case kind == message.Private:
	case k.IsDefault(channel):
		r.Ring = k.PublicRing(part)
	default:
		r.Ring = k.ChannelRing(channel)
	}
	return r
}

// bareRoute is the route of partition part of kind, without a ring.
func (k Partitioned) bareRoute(kind message.Kind, part int) Route {
	stream := k.Stream(part, kind)
	return Route{Kind: kind, Partition: strconv.Itoa(part), Counter: k.Seq(part), Stream: stream,
		DeadLetter: k.DeadLetter(part, kind), PendingDeletes: k.PendingDeletes(part, kind), IndexedSince: IndexedSince(stream)}
}

// Route is the partition of a named channel, of owner's messages in the default channel, or of
// the conversation of owner and recipient.
func (k Partitioned) Route(kind message.Kind, owner, recipient, channel string) Route {
	switch {
	case kind == message.Private:
		return k.route(kind, k.PrivatePartition(owner, recipient), "")
	case k.IsDefault(channel):
		return k.route(kind, k.PublicPartition(owner), channel)
	}
	return k.route(kind, k.ChannelPartition(channel), channel)
}

// RouteOf is the partition an id carries in its low bits; a named channel's ids are all in its
// partition.
func (k Partitioned) RouteOf(kind message.Kind, channel string, id int64) (Route, bool) {
	part := k.PartitionOf(id)
	if id < 1 || part >= k.p || (kind == message.Public && !k.IsDefault(channel) && part != k.ChannelPartition(channel)) {
		return Route{}, false
	}
	return k.route(kind, part, channel), true
}

// Record is chatpipe:layout, holding partitioned:P.
func (k Partitioned) Record() (string, string) { return k.Layout(), k.LayoutValue() }

// single is the single layout under the same prefix (valid: a partitioned prefix is a valid
// single one), whose streams the workers drain while producers switch over.
func (k Partitioned) single() Keys { return Keys{prefix: k.prefix, def: k.def} }

// Name is partitioned.
func (k Partitioned) Name() string { return PartitionedLayout }

// FlushStreams lists the partitioned layout's flush streams, by partition, public first, and
// then the single layout's under the same prefix: while producers switch over, messages still
// arrive there, and the workers drain both (on a cluster each single-layout stream is one key,
// in one slot).
func (k Partitioned) FlushStreams() []FlushStream {
	out := make([]FlushStream, 0, (k.p+1)*len(message.Kinds))
	for part := range k.p {
		for _, kind := range message.Kinds {
			out = append(out, FlushStream{Kind: kind, Partition: strconv.Itoa(part), Stream: k.Stream(part, kind), DeadLetter: k.DeadLetter(part, kind), Layout: k})
		}
	}
	return append(out, k.single().FlushStreams()...)
}

// QueueMonitorLease is the key of the queue monitor's lease.
func (k Partitioned) QueueMonitorLease() string { return k.prefix + "chatpipe:queue_monitor_leader" }
