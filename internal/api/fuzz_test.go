package api

import (
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
)

// FuzzDecodeMessage feeds arbitrary bodies to the request decoding and validation: it must
// never panic, and whatever it accepts must be a valid message whose JSON round-trips.
func FuzzDecodeMessage(f *testing.F) {
	for _, seed := range []string{
		`{"owner_id":"a","username":"A","content":"hi"}`,
		`{"owner_id":"a","recipient_id":"b","content":"hi","created_at":"2026-11-25T10:00:00Z","client_msg_id":"k"}`,
		`{"owner_id":"a","content":"x","content":"y"}`,
		`[[[[[[[[[[[[]]]]]]]]]]]]`,
		"{\"owner_id\":\"a\",\"content\":\"\xff\"}",
		`{"owner_id":7}`, `{"owner_id":"*?[{:","content":"redis.call('FLUSHALL')"}`, ``, `null`, `{} {}`,
	} {
		f.Add([]byte(seed))
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		var req privateRequest
		if err := decodeStrict(body, &req); err != nil {
			if toAPIError(err).code == codeInternal {
				t.Fatalf("a decoding error is unclassified: %v", err)
			}
			return
		}
		m := message.Message{OwnerID: req.OwnerID, RecipientID: req.RecipientID, Username: req.Username, Content: req.Content, CreatedAt: req.CreatedAt}
		if err := m.Validate(true, now); err != nil {
			return
		}
		var back message.Message
		if err := decodeStrict(m.JSON(), &back); err != nil || back != m {
			t.Fatalf("accepted message does not round-trip: %+v → %s → %+v (%v)", m, m.JSON(), back, err)
		}
	})
}
