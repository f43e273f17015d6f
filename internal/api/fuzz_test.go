package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

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
		if err := m.Validate(message.Private, now); err != nil {
			return
		}
		var back message.Message
		if err := decodeStrict(m.JSON(), &back); err != nil || back != m {
			t.Fatalf("accepted message does not round-trip: %+v → %s → %+v (%v)", m, m.JSON(), back, err)
		}
	})
}

// FuzzStructure holds the fast structure scan to the token walk it replaces for valid JSON:
// on every input both must report the same problem, or none.
func FuzzStructure(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":{"a":2},"a":3}`, `{"a":[{"b":1,"b":2}]}`, `{"\u0061":1,"a":2}`, `{"a\"b":1,"a\"b":2}`,
		`[[[[[[[[[]]]]]]]]]`, `[[[[[[[[]]]]]]]]`, `{"a":"{\"a\":1}","b":"[","a":{}}`, `"str"`, `12`, `{"k":{"k":{"k":1}},"k":2}`,
		`{"1":1,"2":2,"3":3,"4":4,"5":5,"6":6,"7":7,"8":8,"9":9,"10":10,"11":11,"12":12,"13":13,"14":14,"15":15,"16":16,"17":17,"1":0}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return
		}
		fast, slow := scanStructure(body), tokenStructure(body)
		if fmt.Sprint(fast) != fmt.Sprint(slow) {
			t.Fatalf("%q: scan says %v, token walk says %v", body, fast, slow)
		}
	})
}

// FuzzFastDecode holds the fast decoders to encoding/json: whatever a fast path decodes,
// encoding/json (strict, as decodeStrict runs it) decodes to the same value.
func FuzzFastDecode(f *testing.F) {
	for _, seed := range []string{
		`{"owner_id":"a","username":"A","content":"hi"}`,
		` { "owner_id" : "a" , "recipient_id":"b", "content":"h\"i\u00e9\n", "client_msg_id":"" } `,
		`{"owner_id":"a","content":"x","extra":1}`, `{"OWNER_ID":"a"}`, `{"owner_id":null}`, `{}`, `{"content":"\ud800"}`,
		`{"messages":[{"owner_id":"a","content":"x"}, {"owner_id":"b","content":"y"} ]}`,
		`{"owner_id":"a","content":"edited"}`, `{"content":"x","owner_id":"a","username":"u"}`,
		`{"messages":[]}`, `{"messages":[1,"x",{}]}`, `{"messages":[{"a":[{"b":"]}"}]}],"x":1}`, `{"messages":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if !utf8.Valid(body) || !json.Valid(body) || checkStructure(body, true) != nil {
			return
		}
		strict := func(v any) error {
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.DisallowUnknownFields()
			if err := dec.Decode(v); err != nil {
				return err
			}
			if dec.More() {
				return fmt.Errorf("trailing data")
			}
			return nil
		}
		for _, pair := range []struct{ fast, slow fastDecoder }{
			{&publicRequest{}, &publicRequest{}}, {&privateRequest{}, &privateRequest{}}, {&batchRequest{}, &batchRequest{}},
			{&editRequest{}, &editRequest{}},
		} {
			if !pair.fast.decodeFast(body) {
				continue
			}
			if err := strict(pair.slow); err != nil {
				t.Fatalf("%q: fast path decoded %T, encoding/json refuses: %v", body, pair.fast, err)
			}
			if !reflect.DeepEqual(pair.fast, pair.slow) {
				t.Fatalf("%q: fast path %+v, encoding/json %+v", body, pair.fast, pair.slow)
			}
		}
	})
}
