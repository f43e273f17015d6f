package message

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// stdJSON is what Message.JSON replaced: encoding/json without HTML escaping.
func stdJSON(m *Message) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m)
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}

func TestJSONMatchesEncodingJSON(t *testing.T) {
	var every strings.Builder
	for c := range 0x80 {
		every.WriteByte(byte(c))
	}
	tests := []string{
		"", "plain", `quote " and backslash \`, "<b>&amp;</b>", every.String(), "\u2028\u2029 line separators",
		"é ü 日本語 🙂", "\x7f del", "bad \xff\xfe utf-8 \xc3", "\xe2\x80", "tab\tnewline\nreturn\r",
	}
	for _, s := range tests {
		for _, m := range []Message{
			{OwnerID: s, Username: s, Content: s, CreatedAt: s},
			{OwnerID: "a", RecipientID: s, Username: "", Content: s, CreatedAt: "2026-12-01T00:00:00Z"},
		} {
			if got, want := m.JSON(), stdJSON(&m); !bytes.Equal(got, want) {
				t.Errorf("JSON(%q)\n got %s\nwant %s", s, got, want)
			}
		}
	}
}

func FuzzJSON(f *testing.F) {
	f.Add("a", "", "u", "hello \"world\" \u2028 \x01", "2026-12-01T00:00:00Z")
	f.Add("\xff", "b", "<>&", "\\", "")
	f.Fuzz(func(t *testing.T, owner, recipient, username, content, created string) {
		m := Message{OwnerID: owner, RecipientID: recipient, Username: username, Content: content, CreatedAt: created}
		if got, want := m.JSON(), stdJSON(&m); !bytes.Equal(got, want) {
			t.Fatalf("JSON(%+v)\n got %s\nwant %s", m, got, want)
		}
	})
}
