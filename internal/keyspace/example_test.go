package keyspace_test

import (
	"fmt"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
)

// A message's keys come from its route: the single layout has one route per kind, the
// list-based cache's keys.
func ExampleKeys_Route() {
	keys, _ := keyspace.New("app:")
	r := keys.Route(message.Public, "ann", "", "")
	fmt.Println(r.Counter)
	fmt.Println(r.Stream)
	fmt.Println(r.Ring)
	// Output:
	// app:cache_message_id
	// app:chatpipe:flush:message
	// app:recent_messages
}

// In the partitioned layout a conversation has one partition whoever writes, and an id names
// its partition, so a deletion finds the message's keys from the id alone.
func ExamplePartitioned_Route() {
	keys, _ := keyspace.NewPartitioned("app:", 16)
	ab, ba := keys.Route(message.Private, "ann", "bob", ""), keys.Route(message.Private, "bob", "ann", "")
	fmt.Println(ab == ba, ab.Ring == "")
	byID, ok := keys.RouteOf(message.Private, "", keyspace.IDBase+7*keyspace.IDStride+9)
	fmt.Println(ok, byID.Partition, byID.Stream)
	// Output:
	// true true
	// true 9 app:{cp9}:flush:private_message
}
