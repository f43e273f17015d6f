package message_test

import (
	"fmt"

	"github.com/chatpipe/chatpipe/internal/message"
)

// A timeline says which messages a reader follows; history and the live tail ask it of every
// record they read.
func ExampleTimeline_Contains() {
	r := message.Record{CacheID: 7, Message: message.Message{OwnerID: "ann", RecipientID: "bob"}}
	for _, tl := range []message.Timeline{message.PrivateTimeline("bob"), message.PrivateTimeline("eve")} {
		fmt.Println(tl.User, tl.Contains(&r))
	}
	// Output:
	// bob true
	// eve false
}

// A ring entry wraps a message's JSON with its id and version, as the rings and flush streams
// hold it: a new message's version is its id.
func ExampleAppendEnvelope() {
	m := message.Message{OwnerID: "ann", Content: "hi", CreatedAt: "2026-12-03T10:00:00Z"}
	fmt.Println(string(message.AppendEnvelope(nil, 42, 42, m.JSON())))
	// Output:
	// {"cache_id":42,"version":42,"data":{"owner_id":"ann","username":"","content":"hi","created_at":"2026-12-03T10:00:00Z"}}
}
