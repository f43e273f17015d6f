package auth_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/chatpipe/chatpipe/internal/auth"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		list string
		// want maps tokens to their scope; absent ones must be unknown.
		want map[string]auth.Scope
	}{
		{"scopes", "read:r1,write:w1,both1", map[string]auth.Scope{"r1": auth.Read, "w1": auth.Write, "both1": auth.Both}},
		{"spaces around items", " read:r1 , both1 ", map[string]auth.Scope{"r1": auth.Read, "both1": auth.Both, " both1": 0}},
		{"one a line, CRLF", "read:r1\r\nwrite:w1\n\nboth1\n", map[string]auth.Scope{"r1": auth.Read, "w1": auth.Write, "both1": auth.Both}},
		{"listed twice: both scopes", "read:x,write:x", map[string]auth.Scope{"x": auth.Both}},
		{"a colon of its own", "admin:t,read:write:z", map[string]auth.Scope{"admin:t": auth.Both, "write:z": auth.Read, "z": 0}},
		{"prefix is case-sensitive", "READ:t", map[string]auth.Scope{"READ:t": auth.Both, "t": 0}},
		{"longest token", strings.Repeat("a", auth.MaxTokenLen), map[string]auth.Scope{strings.Repeat("a", auth.MaxTokenLen): auth.Both}},
		{"unknown tokens", "read:r1", map[string]auth.Scope{"": 0, "r": 0, "r1 ": 0, "read:r1": 0, "R1": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := auth.Parse(tt.list)
			if err != nil {
				t.Fatal(err)
			}
			for token, want := range tt.want {
				if got := set.Scope(token); got != want {
					t.Errorf("Scope(%q) = %s, want %s", token, got, want)
				}
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, list, want string }{
		{"empty", "", "no token"},
		{"only commas", ",,\n,", "no token"},
		{"prefix alone", "read:", "token 1"},
		{"prefix alone, later", "a,write:", "token 2"},
		{"inner space", "a b", "space"},
		{"tab", "a\tb", "space"},
		{"control character", "a\x00b", "control"},
		{"non-ASCII", "jeton-é", "non-ASCII"},
		{"too long", strings.Repeat("a", auth.MaxTokenLen+1), "longer than"},
		{"too many", strings.Repeat("t,", auth.MaxTokens) + "u", "more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.Parse(tt.list)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse: %v, want an error saying %q", err, tt.want)
			}
			// The error names a token by its place, never by its value.
			if strings.Contains(err.Error(), "jeton") || strings.Contains(err.Error(), "aaaa") {
				t.Errorf("the error repeats the token: %v", err)
			}
		})
	}
}

func TestOneAndJoin(t *testing.T) {
	t.Parallel()
	one, err := auth.One("read:legacy,with-comma")
	if err != nil {
		t.Fatal(err)
	}
	if one.Scope("read:legacy,with-comma") != auth.Both || one.Scope("legacy") != 0 {
		t.Error("One must take the token whole, with both scopes")
	}
	if _, err := auth.One(""); err == nil {
		t.Error("One accepted an empty token")
	}
	list, _ := auth.Parse("read:r1,write:w1")
	both := auth.Join(one, list)
	if both.Len() != 3 || both.Count(auth.Read) != 1 || both.Count(auth.Write) != 1 || both.Count(auth.Both) != 1 {
		t.Errorf("Join: %d tokens, want 3 of one scope each", both.Len())
	}
	if auth.Join(nil, nil) != nil || auth.Join(nil, list) != list || auth.Join(one, nil) != one {
		t.Error("Join with nil must return the other set")
	}
}

// TestKeyringReplace: requests checked while the tokens are replaced see the old set or the
// new one, never neither (run with -race).
func TestKeyringReplace(t *testing.T) {
	t.Parallel()
	oldSet, _ := auth.Parse("old,keep")
	newSet, _ := auth.Parse("new,keep")
	k := auth.NewKeyring(oldSet)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				if k.Scope("keep") != auth.Both {
					t.Error("a token in both sets was refused during a replace")
					return
				}
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			k.Replace(newSet)
		} else {
			k.Replace(oldSet)
		}
	}
	wg.Wait()
	k.Replace(newSet)
	if k.Scope("old") != 0 || k.Scope("new") != auth.Both {
		t.Error("after Replace the removed token must be unknown and the new one known")
	}
}

func BenchmarkScope(b *testing.B) {
	set, _ := auth.Parse("read:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa,write:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb,cccccccccccccccccccccccccccccccc")
	for b.Loop() {
		set.Scope("cccccccccccccccccccccccccccccccc")
	}
}
