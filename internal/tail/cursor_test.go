package tail

import (
	"slices"
	"strings"
	"testing"
)

// TestCursorRoundTrip: a cursor reads back as the positions it was made of, and only with the
// shard count it was made for.
func TestCursorRoundTrip(t *testing.T) {
	for _, ps := range [][]pos{
		{{ms: 0, seq: 0, ord: 0}},
		{{ms: 1796178651964, seq: 3, ord: 123456}},
		slices.Repeat([]pos{{ms: 1<<63 - 1, seq: 1<<64 - 1, ord: 1 << 62}}, 64),
	} {
		c := encodeCursor(ps)
		got, err := decodeCursor(c, len(ps))
		if err != nil || !slices.Equal(got, ps) {
			t.Errorf("%v: %v, %v", ps, got, err)
		}
		if _, err := decodeCursor(c, len(ps)+1); err == nil {
			t.Errorf("a cursor of %d shards read as one of %d", len(ps), len(ps)+1)
		}
		if strings.ContainsAny(c, "\r\n:") {
			t.Errorf("cursor %q cannot be an SSE id", c)
		}
	}
}

// FuzzCursor: whatever a client sends as Last-Event-ID, decoding never panics, and what decodes
// encodes back to the same text.
func FuzzCursor(f *testing.F) {
	f.Add(encodeCursor([]pos{{ms: 5, seq: 1, ord: 2}}), 1)
	f.Add("", 1)
	f.Add("AQ", 1)
	f.Add(strings.Repeat("A", 5000), 16)
	f.Add("AQEB////////////fw", 1)
	f.Fuzz(func(t *testing.T, s string, shards int) {
		if shards < 1 || shards > 64 {
			return
		}
		ps, err := decodeCursor(s, shards)
		if err != nil {
			return
		}
		if len(ps) != shards {
			t.Fatalf("%d positions for %d shards", len(ps), shards)
		}
		if back, err := decodeCursor(encodeCursor(ps), shards); err != nil || !slices.Equal(back, ps) {
			t.Fatalf("%q: round trip %v, %v", s, back, err)
		}
	})
}
