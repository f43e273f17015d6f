package message_test

import (
	"testing"

	"github.com/chatpipe/chatpipe/internal/message"
)

// FuzzDecodeEntry: any stream entry decodes to a record or a bad-entry error, never a panic;
// a decoded message carries the entry's cache id.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("7", "message", `{"cache_id":7,"data":{"owner_id":"a","content":"hi","created_at":"2026-11-25T10:00:00Z"}}`)
	f.Add("7", "delete", "")
	f.Add("", "message", "{")
	f.Add("9223372036854775807", "message", `{"cache_id":9223372036854775807,"data":{"owner_id":"a","created_at":"2026-11-25T10:00:00+14:00"}}`)
	f.Fuzz(func(t *testing.T, id, kind, payload string) {
		r, err := message.DecodeEntry(message.KindMessage, "", "1-1", map[string]string{"cache_id": id, "kind": kind, "payload": payload})
		if err != nil {
			return
		}
		if r.CacheID < 1 || r.StreamID != "1-1" {
			t.Fatalf("decoded %+v from %q %q %q", r, id, kind, payload)
		}
		if r.Op == message.OpPost && (r.Message.OwnerID == "" || r.CreatedAt.IsZero()) {
			t.Fatalf("decoded an incomplete message %+v", r)
		}
	})
}
