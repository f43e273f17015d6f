// Package keyspace builds every Valkey key chatpipe uses, in one place, in two layouts: Keys
// (single: the names of the list-based chat cache that chatpipe replaces, so existing readers of
// the rings and counters keep working) and Partitioned (hash-tagged for Valkey Cluster, see
// docs/scaleout.md). Both are a Layout; callers ask it for a message's Route and a reader's
// Shards and never look at which one they hold. Scripts receive keys only through KEYS and
// never build them.
package keyspace

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/chatpipe/chatpipe/internal/message"
)

// MaxPrefixLen bounds the configurable key prefix.
const MaxPrefixLen = 64

// Keys builds key names under an optional prefix.
type Keys struct {
	prefix string
	// def is the default channel ("": message.DefaultChannel), whose ring keeps the list-based
	// cache's name.
	def string
	// shared holds the keys every message of a kind shares, built once by New (nil for a
	// literal Keys{}: they are built on each call then).
	shared *sharedKeys
}

// sharedKeys are the keys a layout would otherwise build again for every message: a route of
// each kind (its Ring left out), the default channel's ring and the rate-limit settings.
type sharedKeys struct {
	routes   []Route // by kind; a partitioned layout's by partition, then kind
	rings    []string
	settings string
}

// New returns a key builder for prefix, which may be empty.
// It fails when the prefix is too long or holds whitespace or control characters.
func New(prefix string) (Keys, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return Keys{}, err
	}
	k := Keys{prefix: prefix}
	shared := &sharedKeys{rings: []string{k.PublicRing()}, settings: k.RateSettings()}
	for _, kind := range message.Kinds {
		shared.routes = append(shared.routes, k.route(kind))
	}
	k.shared = shared
	return k, nil
}

// ValidatePrefix reports whether prefix may be used as a key prefix.
func ValidatePrefix(prefix string) error {
	if len(prefix) > MaxPrefixLen {
		return fmt.Errorf("longer than %d bytes", MaxPrefixLen)
	}
	if strings.IndexFunc(prefix, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("holds whitespace or control characters")
	}
	return nil
}

// Counter is the id counter (INCR) of a kind.
func (k Keys) Counter(kind message.Kind) string {
	if kind == message.Private {
		return k.prefix + "cache_private_message_id"
	}
	return k.prefix + "cache_message_id"
}

// PublicRing is the ring of the last N public messages of the default channel.
func (k Keys) PublicRing() string {
	if k.shared != nil {
		return k.shared.rings[0]
	}
	return k.prefix + "recent_messages"
}

// ChannelRing is the ring of a channel: the default channel's is PublicRing.
func (k Keys) ChannelRing(channel string) string {
	if isDefault(k.def, channel) {
		return k.PublicRing()
	}
	return k.prefix + "recent_channel_messages:" + channel
}

// WithDefaultChannel is k with channel as the default channel (DEFAULT_CHANNEL).
func (k Keys) WithDefaultChannel(channel string) Keys {
	k.def = channel
	return k
}

func defaultChannel(def string) string { return cmp.Or(def, message.DefaultChannel) }

// isDefault reports whether channel is the default channel def (or names none).
func isDefault(def, channel string) bool { return channel == "" || channel == defaultChannel(def) }

// PrivateRing is the ring of a user's last N private messages, sent and received.
func (k Keys) PrivateRing(userID string) string {
	return k.prefix + "recent_private_messages:" + userID
}

// Ring is the ring of a timeline: its channel's, or its user's private one.
func (k Keys) Ring(tl message.Timeline) string {
	if tl.Kind == message.Private {
		return k.PrivateRing(tl.User)
	}
	return k.ChannelRing(tl.Channel)
}

// RateLimit is a user's fixed-window counter.
func (k Keys) RateLimit(userID string) string { return k.prefix + "ratelimit:" + userID }

// RateLimitGCRA is a user's GCRA state (the theoretical arrival time). It is a key of its own
// so that switching algorithms never reads one algorithm's state as the other's.
func (k Keys) RateLimitGCRA(userID string) string { return k.prefix + "ratelimit_gcra:" + userID }

// RateSettings is the hash of rate-limit settings shared by every ingest replica.
func (k Keys) RateSettings() string {
	if k.shared != nil {
		return k.shared.settings
	}
	return k.prefix + "chatpipe:ratelimit_settings"
}

// ClientMsg records the cache id given to a client's retry-safe message. Both ids are
// length-prefixed so that no two (owner, client id) pairs can share a key whatever they hold.
func (k Keys) ClientMsg(r Route, ownerID, clientMsgID string) string {
	return k.prefix + "chatpipe:client_msg:" + r.Kind.String() + ":" +
		strconv.Itoa(len(ownerID)) + ":" + ownerID + ":" + clientMsgID
}

// Stream is the flush stream of a kind.
func (k Keys) Stream(kind message.Kind) string { return k.prefix + "chatpipe:flush:" + kind.String() }

// DeadLetter is the dead-letter stream beside the flush stream of a kind.
func (k Keys) DeadLetter(kind message.Kind) string {
	return k.prefix + "chatpipe:dead:" + kind.String()
}

// LegacyFlushList is the flush list of the list-based cache, drained into the stream.
func (k Keys) LegacyFlushList(kind message.Kind) string {
	if kind == message.Private {
		return k.prefix + "flush_private_messages"
	}
	return k.prefix + "flush_messages"
}

// Probe is the short-lived key ingest writes to learn whether Valkey takes writes again after
// it answered OOM.
func (k Keys) Probe() string { return k.prefix + "chatpipe:probe" }

// QueueMonitorLease is the key of the lease that picks the one replica exporting queue gauges.
func (k Keys) QueueMonitorLease() string { return k.prefix + "chatpipe:queue_monitor_leader" }

// FlushStream is one flush stream of a layout: its kind, its partition ("" in the single
// layout) and the keys of the stream and of its dead letters.
type FlushStream struct {
	Kind       message.Kind
	Partition  string
	Stream     string
	DeadLetter string
	// Layout is the layout that writes the stream, and so the rings of its messages: the
	// single layout's streams are drained under the partitioned one too.
	Layout Layout
}

// Label names the flush stream for people: its kind, and its partition when there is one
// (message/3).
func (f FlushStream) Label() string {
	if f.Partition == "" {
		return f.Kind.String()
	}
	return f.Kind.String() + "/" + f.Partition
}

// FlushStreams lists the single layout's flush streams, public first.
func (k Keys) FlushStreams() []FlushStream {
	out := make([]FlushStream, 0, len(message.Kinds))
	for _, kind := range message.Kinds {
		out = append(out, FlushStream{Kind: kind, Stream: k.Stream(kind), DeadLetter: k.DeadLetter(kind), Layout: k})
	}
	return out
}

// PendingDeletes is the sorted set of a kind's deletions not yet known to be applied in
// PostgreSQL (member: the cache id; score: the deletion's stream time in ms), read by history so
// that a deletion still on its way to PostgreSQL is honoured.
func (k Keys) PendingDeletes(kind message.Kind) string {
	return k.prefix + "chatpipe:pending_deletes:" + kind.String()
}

// Shard is one part of a kind's messages as the read side sees it: a flush stream, its pending
// deletions and, for public messages, the ring that holds the newest of them ("" when none is
// exact enough to answer from).
type Shard struct {
	Stream         string
	PendingDeletes string
	Ring           string
}

// ShardsOf is the one shard of the timeline's kind, with a channel's ring.
func (k Keys) ShardsOf(tl message.Timeline) []Shard {
	s := k.Shards(tl.Kind)
	if tl.Kind == message.Public {
		s[0].Ring = k.ChannelRing(tl.Channel)
	}
	return s
}

// Shards lists the single layout's one shard of kind.
func (k Keys) Shards(kind message.Kind) []Shard {
	s := Shard{Stream: k.Stream(kind), PendingDeletes: k.PendingDeletes(kind)}
	if kind == message.Public {
		s.Ring = k.PublicRing()
	}
	return []Shard{s}
}
