package message

import (
	"strconv"
	"testing"
)

// TestScannerKnowsEveryField: the entry scanner, the fast path of DecodeEntry, reads every field
// of the table. A field it does not know makes it give up on every entry that carries the field
// (encoding/json then decodes it, correctly but at several times the cost), which no other
// test would notice; TestFieldsConform (internal/api) checks every other place.
func TestScannerKnowsEveryField(t *testing.T) {
	for _, f := range Fields {
		var v string
		switch f.Type {
		case String, Time:
			v = strconv.Quote("v_" + f.JSON)
		case Int:
			v = "42"
		}
		payload := `{"cache_id":7,"version":8,"data":{"owner_id":"o",` + strconv.Quote(f.JSON) + `:` + v + `}}`
		if f.JSON == "owner_id" {
			payload = `{"cache_id":7,"version":8,"data":{"owner_id":"o"}}`
		}
		if _, ok := scanEntry(payload); !ok {
			t.Errorf("field %q (%s) is in message.Fields but the entry scanner (internal/message/entryscan.go) gives up on it", f.JSON, f.Type)
		}
	}
}
