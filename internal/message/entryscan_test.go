package message

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzScanEntry holds the reflection-free payload scan to encoding/json: whatever the scan
// accepts, json.Unmarshal accepts too, with the same result.
func FuzzScanEntry(f *testing.F) {
	for _, seed := range []string{
		`{"cache_id":7,"data":{"owner_id":"a","username":"A","content":"hi","created_at":"2026-11-25T10:00:00Z"}}`,
		`{"cache_id":7,"data":{"owner_id":"a","recipient_id":"b","content":"hi"}}`,
		` { "data" : { "owner_id" : "a" } , "cache_id" : -0 } `,
		`{"cache_id":7,"data":{"owner_id":"a"},"data":{"content":"merged"}}`,
		`{"cache_id":07,"data":{}}`, `{"cache_id":7.0,"data":{}}`, `{"cache_id":1e3,"data":{}}`,
		`{"cache_id":9223372036854775808,"data":{}}`, `{"Cache_ID":7,"data":{}}`, `{"cache_id":7,"data":{"content":"a\"b"}}`,
		"{\"cache_id\":7,\"data\":{\"content\":\"\xff\"}}", `{"cache_id":7,"data":{}} x`, `{}`, `[]`, `{"cache_id":7,}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, p string) {
		fast, ok := scanEntry(p)
		if !ok {
			return
		}
		var slow ringEntry
		if err := json.Unmarshal([]byte(p), &slow); err != nil {
			t.Fatalf("%q: scanned as %+v, but encoding/json says %v", p, fast, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: scan gives %s, encoding/json %s", p, show(fast), show(slow))
		}
	})
}

func show(e ringEntry) string {
	b, _ := json.Marshal(e)
	return string(b)
}

// TestScanEntryTakesIngestPayloads: what ingest writes takes the fast path.
func TestScanEntryTakesIngestPayloads(t *testing.T) {
	m := Message{OwnerID: "u1", RecipientID: "u2", Username: "Ünïcode & <tags>", Content: "plain text with émojis 🎉, {braces}: and <html> & more", CreatedAt: "2026-11-25T10:00:00Z"}
	p := `{"cache_id":42,"data":` + string(m.JSON()) + `}`
	e, ok := scanEntry(p)
	if !ok || *e.CacheID != 42 || *e.Data != m {
		t.Fatalf("scanEntry(%s) = %s, %v", p, show(e), ok)
	}
}
