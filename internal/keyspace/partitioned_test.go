package keyspace_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"

	"github.com/chatpipe/chatpipe/internal/message"
)

func TestPartitionedKeys(t *testing.T) {
	k, err := keyspace.NewPartitioned("app:", 16)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := k.PrivatePartition("alice", "bob"), k.PrivatePartition("bob", "alice"); a != b {
		t.Fatalf("a conversation's partition depends on who sends: %d, %d", a, b)
	}
	seen := map[int]bool{}
	for i := range 1000 {
		p := k.PublicPartition(fmt.Sprintf("user%d", i))
		if p < 0 || p >= 16 {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p] = true
	}
	if len(seen) != 16 {
		t.Fatalf("1000 owners fell in %d of 16 partitions", len(seen))
	}
	route3, ok := k.RouteOf(message.Public, "", keyspace.IDBase+3)
	if !ok || route3.Partition != "3" {
		t.Fatalf("the route of an id of partition 3: %+v", route3)
	}
	for _, key := range []string{route3.Counter, route3.Stream, route3.PendingDeletes, route3.Ring, k.Seq(3), k.Stream(3, message.Private), k.DeadLetter(3, message.Public), k.PublicRing(3),
		k.ClientMsg(route3, "u", "c")} {
		if !strings.HasPrefix(key, "app:{cp3}:") {
			t.Errorf("%q is not in partition 3's slot", key)
		}
	}
	for _, key := range []string{k.PrivateRing("bob"), k.RateLimit("bob"), k.RateLimitGCRA("bob")} {
		if !strings.HasPrefix(key, "app:{cu:bob}:") {
			t.Errorf("%q is not in bob's slot", key)
		}
	}
	if id := int64(keyspace.IDBase + 64*1000 + 5); k.PartitionOf(id) != 5 || k.Sequence(id) != 1000 || k.Sequence(64*1000+5) != 0 {
		t.Fatal("PartitionOf or Sequence")
	}
}

func TestNewPartitionedRefuses(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		p      int
	}{{"a{b", 16}, {"", 0}, {"", 65}, {"a b", 16}, {strings.Repeat("p", 65), 16}} {
		if _, err := keyspace.NewPartitioned(tt.prefix, tt.p); err == nil {
			t.Errorf("NewPartitioned(%q, %d) accepted", tt.prefix, tt.p)
		}
	}
}
