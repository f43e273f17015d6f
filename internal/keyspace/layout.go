package keyspace

import (
	"fmt"
	"strconv"
)

// Layout is a keyspace layout: Keys (single, the list-based cache's keys) or Partitioned (for
// Valkey Cluster). main picks one; the rest asks it for what differs.
type Layout interface {
	// Name is single or partitioned.
	Name() string
	// FlushStreams lists every flush stream the workers consume.
	FlushStreams() []FlushStream
	// QueueMonitorLease is the key of the queue monitor's lease.
	QueueMonitorLease() string
	// Shards lists what the read side (history, live tail) reads of a kind.
	Shards(kind Kind) []Shard
	// RateSettings is the key of the shared rate-limit settings.
	RateSettings() string
}

// The layouts of KEY_LAYOUT.
const (
	SingleLayout      = "single"
	PartitionedLayout = "partitioned"
)

// NewLayout returns the layout name (single or partitioned) under prefix; partitions is P of the
// partitioned layout.
func NewLayout(name, prefix string, partitions int) (Layout, error) {
	switch name {
	case SingleLayout:
		return New(prefix)
	case PartitionedLayout:
		return NewPartitioned(prefix, partitions)
	}
	return nil, fmt.Errorf("layout %q is not single or partitioned", name)
}

// Name is single.
func (k Keys) Name() string { return SingleLayout }

// Name is partitioned.
func (k Partitioned) Name() string { return PartitionedLayout }

// FlushStreams lists the partitioned layout's flush streams, by partition, public first, and
// then the single layout's under the same prefix: while producers switch over, messages still
// arrive there, and the workers drain both (on a cluster each single-layout stream is one key,
// in one slot).
func (k Partitioned) FlushStreams() []FlushStream {
	out := make([]FlushStream, 0, (k.p+1)*len(Kinds))
	for part := range k.p {
		for _, kind := range Kinds {
			out = append(out, FlushStream{Kind: kind, Partition: strconv.Itoa(part), Stream: k.Stream(part, kind), DeadLetter: k.DeadLetter(part, kind)})
		}
	}
	single, _ := New(k.prefix)
	return append(out, single.FlushStreams()...)
}

// QueueMonitorLease is the key of the queue monitor's lease.
func (k Partitioned) QueueMonitorLease() string { return k.prefix + "chatpipe:queue_monitor_leader" }
