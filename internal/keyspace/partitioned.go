package keyspace

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/chatpipe/chatpipe/internal/message"
)

// Partition bounds: P is fixed when a deployment is created and recorded in Valkey; ids carry
// the partition in their low 6 bits (id % IDStride), so P can never exceed IDStride.
const (
	// IDStride is the factor between an id's sequence number and its partition.
	IDStride = 64
	// MaxPartitions is the most partitions a layout may have.
	MaxPartitions = IDStride
	// DefaultPartitions is P when none is given.
	DefaultPartitions = 16
	// IDBase is the lowest id of the partitioned layout, 2^52: the single layout's ids (counter
	// or clock) stay below it for a century, so both layouts' ids can meet in one table.
	IDBase = 1 << 52
)

// Partitioned builds the keys of the partitioned layout for Valkey Cluster: every key a script
// touches carries the hash tag of one partition ({cp<k>}) or of one user ({cu:<user>}), so each
// script runs on one slot. Public messages go to the partition of their owner, private ones to
// the partition of their conversation (both users, in either order), so ids rise within a
// conversation and within one owner's public messages.
type Partitioned struct {
	prefix string
	p      int
	def    string // the default channel, as in Keys
	shared *sharedKeys
}

// NewPartitioned returns the partitioned key builder for prefix and p partitions. The prefix may
// not hold braces: it comes before the hash tag, and a brace in it would become the tag.
func NewPartitioned(prefix string, p int) (Partitioned, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Partitioned{}, err
	}
	if strings.ContainsAny(prefix, "{}") {
		return Partitioned{}, errors.New("holds { or }, which would become the hash tag of every key")
	}
	if p < 1 || p > MaxPartitions {
		return Partitioned{}, fmt.Errorf("partitions must be 1..%d", MaxPartitions)
	}
	k := Partitioned{prefix: prefix, p: p}
	shared := &sharedKeys{settings: k.RateSettings()}
	for part := range p {
		shared.rings = append(shared.rings, k.PublicRing(part))
		for _, kind := range message.Kinds {
			shared.routes = append(shared.routes, k.bareRoute(kind, part))
		}
	}
	k.shared = shared
	return k, nil
}

// Partitions is P.
func (k Partitioned) Partitions() int { return k.p }

// PublicPartition is the partition of a public message of owner.
func (k Partitioned) PublicPartition(owner string) int { return hash(owner) % k.p }

// PrivatePartition is the partition of the conversation between a and b, whichever sent.
func (k Partitioned) PrivatePartition(a, b string) int {
	if b < a {
		a, b = b, a
	}
	return hash(a+"\x00"+b) % k.p
}

// PartitionOf is the partition an id was given in.
func (k Partitioned) PartitionOf(id int64) int { return int(id % IDStride) }

// Sequence is the partition sequence's value when id was given, or 0 for an id below IDBase.
func (k Partitioned) Sequence(id int64) int64 {
	if id < IDBase {
		return 0
	}
	return (id - IDBase) / IDStride
}

// hash is FNV-1a, 32 bits: never change it or P, or messages move partition.
func hash(s string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(s))
	return int(h.Sum32() & 0x7fffffff)
}

func (k Partitioned) tag(part int) string { return k.prefix + "{cp" + strconv.Itoa(part) + "}:" }

// Seq is partition part's sequence counter, shared by both kinds.
func (k Partitioned) Seq(part int) string { return k.tag(part) + "seq" }

// Stream is partition part's flush stream of a kind.
func (k Partitioned) Stream(part int, kind message.Kind) string {
	return k.tag(part) + "flush:" + kind.String()
}

// DeadLetter is the dead-letter stream beside partition part's flush stream of a kind.
func (k Partitioned) DeadLetter(part int, kind message.Kind) string {
	return k.tag(part) + "dead:" + kind.String()
}

// PublicRing is partition part's shard of the default channel's ring; the ring is read as a
// merge of them.
func (k Partitioned) PublicRing(part int) string {
	if k.shared != nil {
		return k.shared.rings[part]
	}
	return k.tag(part) + "recent"
}

// ChannelPartition is the partition of a named channel: all its messages, so its ids rise and
// its events are ordered in one stream. The default channel is sharded by owner instead.
func (k Partitioned) ChannelPartition(channel string) int { return hash(channel) % k.p }

// ChannelRing is a named channel's ring, in its partition's slot; "" for the default channel,
// whose ring is sharded (PublicRing of each partition).
func (k Partitioned) ChannelRing(channel string) string {
	if k.IsDefault(channel) {
		return ""
	}
	return k.tag(k.ChannelPartition(channel)) + "recent:c:" + channel
}

// IsDefault reports whether channel is the default channel (or names none).
func (k Partitioned) IsDefault(channel string) bool { return isDefault(k.def, channel) }

// WithDefaultChannel is k with channel as the default channel (DEFAULT_CHANNEL).
func (k Partitioned) WithDefaultChannel(channel string) Partitioned {
	k.def = channel
	return k
}

// ClientMsg is the record of a client_msg_id, in the partition of the message's route r,
// length-prefixed as in the single layout.
func (k Partitioned) ClientMsg(r Route, ownerID, clientMsgID string) string {
	return k.prefix + "{cp" + r.Partition + "}:client_msg:" + r.Kind.String() + ":" + strconv.Itoa(len(ownerID)) + ":" + ownerID + ":" + clientMsgID
}

// PrivateRing is a user's ring of private messages (a sorted set scored by id), in the user's
// own slot.
func (k Partitioned) PrivateRing(user string) string {
	return k.prefix + "{cu:" + user + "}:recent_private"
}

// RateLimit and RateLimitGCRA are a user's rate-limit state, in the user's own slot.
func (k Partitioned) RateLimit(user string) string { return k.prefix + "{cu:" + user + "}:ratelimit" }

// RateLimitGCRA is a user's GCRA state.
func (k Partitioned) RateLimitGCRA(user string) string {
	return k.prefix + "{cu:" + user + "}:ratelimit_gcra"
}

// RateSettings is the rate-limit settings hash shared by every ingest replica.
func (k Partitioned) RateSettings() string {
	if k.shared != nil {
		return k.shared.settings
	}
	return k.prefix + "chatpipe:ratelimit_settings"
}

// Probe is the short-lived key written in partition part's slot to learn whether its node
// takes writes again after it answered OOM.
func (k Partitioned) Probe(part int) string { return k.tag(part) + "probe" }

// Layout is the key recording the layout and P, so that a replica started with another P
// refuses to run.
func (k Partitioned) Layout() string { return k.prefix + "chatpipe:layout" }

// LayoutValue is what Layout holds for this builder.
func (k Partitioned) LayoutValue() string { return "partitioned:" + strconv.Itoa(k.p) }

// PendingDeletes is partition part's set of deletions not yet applied (see Keys.PendingDeletes).
func (k Partitioned) PendingDeletes(part int, kind message.Kind) string {
	return k.tag(part) + "pending_deletes:" + kind.String()
}

// ShardsOf lists the shards of a timeline: every partition for a private timeline or the
// default channel (sharded by owner), the channel's own partition, with its ring, for a named
// channel.
func (k Partitioned) ShardsOf(tl message.Timeline) []Shard {
	if tl.Kind == message.Private || k.IsDefault(tl.Channel) {
		return k.Shards(tl.Kind)
	}
	part := k.ChannelPartition(tl.Channel)
	return []Shard{{Stream: k.Stream(part, tl.Kind), PendingDeletes: k.PendingDeletes(part, tl.Kind), Ring: k.ChannelRing(tl.Channel)}}
}

// Shards lists kind's shards, one per partition. Private rings are per user and written after
// the enqueue, so they are no source of history.
func (k Partitioned) Shards(kind message.Kind) []Shard {
	out := make([]Shard, k.p)
	for part := range out {
		out[part] = Shard{Stream: k.Stream(part, kind), PendingDeletes: k.PendingDeletes(part, kind)}
		if kind == message.Public {
			out[part].Ring = k.PublicRing(part)
		}
	}
	return out
}
