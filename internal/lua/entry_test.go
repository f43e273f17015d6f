package lua_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/message"
)

// TestEntryFieldsAgree: entry.lua, the Lua writer of flush-stream entries, names exactly the
// fields Go declares (message.EntryFields); no other script of this package adds an entry.
func TestEntryFieldsAgree(t *testing.T) {
	fields := func(name string) []string {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		// The field names are the quoted words between '*' and the end of each XADD call.
		var got []string
		for _, call := range regexp.MustCompile(`(?s)'XADD', [^,]+, '\*',(.*?)\)\n`).FindAllSubmatch(src, -1) {
			for i, m := range regexp.MustCompile(`'([^']*)'|[\w\[\]]+`).FindAllSubmatch(call[1], -1) {
				if i%2 == 0 && len(m[1]) > 0 && !slices.Contains(got, string(m[1])) {
					got = append(got, string(m[1]))
				}
			}
		}
		slices.Sort(got)
		return got
	}
	want := slices.Clone(message.EntryFields)
	slices.Sort(want)
	if got := fields("entry.lua"); !slices.Equal(got, want) {
		t.Errorf("entry.lua writes the fields %v, message.EntryFields are %v", got, want)
	}
	scripts, _ := filepath.Glob("*.lua")
	for _, f := range scripts {
		b, _ := os.ReadFile(f)
		if f != "entry.lua" && strings.Contains(string(b), "'XADD'") {
			t.Errorf("%s adds a stream entry itself: only entry.lua does", f)
		}
	}
}
