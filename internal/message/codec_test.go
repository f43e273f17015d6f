package message

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
)

// fillStrings sets every string field of the struct v points to (embedded ones too) to a value
// of its own, and returns how many it set.
func fillStrings(t *testing.T, v reflect.Value, n *int) {
	t.Helper()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			*n++
			f.SetString("v" + strconv.Itoa(*n) + " ü") // no escapes: the scanner leaves those to encoding/json
		case reflect.Struct:
			fillStrings(t, f, n)
		default:
			t.Fatalf("field %s of %s is a %s: teach this test (and the codec) about it", v.Type().Field(i).Name, v.Type(), f.Kind())
		}
	}
}

// TestCodecCoversEveryField: a Message with every field set goes through each of the codec's
// fast paths — AppendJSON out, the entry scanner in — and comes back equal, and AppendJSON
// writes what encoding/json writes. A field added to Message and forgotten in one of them fails
// here, where it would otherwise make the scanner give up and every read fall back to
// encoding/json without a sound.
func TestCodecCoversEveryField(t *testing.T) {
	var m Message
	n := 0
	fillStrings(t, reflect.ValueOf(&m).Elem(), &n)
	m.CreatedAt = "2026-12-03T10:00:00.123456Z" // the scanner wants a time here
	if got, want := string(m.JSON()), string(stdJSON(&m)); got != want {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, want)
	}
	m.EditedAt = "2026-12-03T10:00:01.5Z"
	payload := string(AppendEnvelope(nil, 42, 57, m.JSON()))
	e, ok := scanEntry(payload)
	if !ok {
		t.Fatalf("the entry scanner gave up on %s: a field it does not know?", payload)
	}
	if *e.CacheID != 42 || e.Version == nil || *e.Version != 57 || *e.Data != m {
		t.Errorf("scanned %d %v %+v, want 42 57 %+v", *e.CacheID, e.Version, *e.Data, m)
	}
	var std ringEntry
	if err := json.Unmarshal([]byte(payload), &std); err != nil || *std.Data != m {
		t.Errorf("encoding/json reads %+v (%v), want %+v", std.Data, err, m)
	}
	rec, err := DecodeRingEntry(KindMessage, "", 42, payload) // public: a private message has no channel
	if err != nil || rec.Message != m {
		t.Errorf("DecodeRingEntry: %+v, %v", rec.Message, err)
	}
}
