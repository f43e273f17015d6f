package message_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chatpipe/chatpipe/internal/message"
)

// TestReactionsOnEntries: counts go on a ring entry and come off it whole; "me" marks only the
// emoji named, once, whatever their characters.
func TestReactionsOnEntries(t *testing.T) {
	entry := []byte(`{"cache_id":7,"version":7,"data":{"owner_id":"u","content":"a \"reactions\":[ trap"}}`)
	counts := message.AppendCounts(nil, []message.Count{{Emoji: "👍", Count: 2}, {Emoji: `:"q":`, Count: 1}, {Emoji: "👍🏽", Count: 3}})
	with := message.WithReactions(entry, counts, 42)
	want := `{"cache_id":7,"version":7,"data":{"owner_id":"u","content":"a \"reactions\":[ trap"},"reactions":[{"emoji":"👍","count":2},{"emoji":":\"q\":","count":1},{"emoji":"👍🏽","count":3}],"reactions_version":42}`
	if string(with) != want {
		t.Fatalf("with reactions:\n%s\nwant\n%s", with, want)
	}
	base, got, v := message.SplitReactions(with)
	if string(base) != string(entry) || string(got) != string(counts) || v != 42 {
		t.Errorf("split: %s | %s | %d", base, got, v)
	}
	if base, got, v := message.SplitReactions(entry); string(base) != string(entry) || got != nil || v != 0 {
		t.Errorf("an entry without reactions splits into %s | %s | %d", base, got, v)
	}
	for _, c := range []struct {
		mine []string
		want string
	}{
		{nil, string(counts)},
		{[]string{`"👍"`}, `[{"emoji":"👍","count":2,"me":true},{"emoji":":\"q\":","count":1},{"emoji":"👍🏽","count":3}]`},
		{[]string{`"👍🏽"`, `":\"q\":"`, `"🔥"`}, `[{"emoji":"👍","count":2},{"emoji":":\"q\":","count":1,"me":true},{"emoji":"👍🏽","count":3,"me":true}]`},
		{[]string{`"👍"`, `"👍"`}, `[{"emoji":"👍","count":2,"me":true},{"emoji":":\"q\":","count":1},{"emoji":"👍🏽","count":3}]`},
	} {
		if got := string(message.MarkMine(counts, c.mine)); got != c.want {
			t.Errorf("mine %v: %s, want %s", c.mine, got, c.want)
		}
	}
	if strings.Contains(string(counts), "me") {
		t.Error("MarkMine changed the counts it was given")
	}
}

// TestValidateEmoji: the emoji rules of a reaction path.
func TestValidateEmoji(t *testing.T) {
	for _, c := range []struct {
		emoji string
		ok    bool
	}{
		{"👍", true}, {":tada:", true}, {"👩‍👩‍👧", true}, {strings.Repeat("x", 64), true},
		{"", false}, {strings.Repeat("x", 65), false}, {"a b", false}, {"a\u0000", false}, {"\xff", false}, {"👍\n", false}, {"\u00a0", false},
	} {
		if err := message.ValidateEmoji(c.emoji); (err == nil) != c.ok {
			t.Errorf("%q: %v, want ok %t", c.emoji, err, c.ok)
		}
	}
}

// TestDecodeReactionEntry: a reaction entry decodes to its toggle, counts and place; every
// malformed one is a bad entry (the worker dead-letters it), never a panic.
func TestDecodeReactionEntry(t *testing.T) {
	good := `{"emoji":"👍","user_id":"u2","op":"add","reactions":[{"emoji":"👍","count":1}],"reactions_version":9}`
	entry := func(payload string, extra ...string) map[string]string {
		f := map[string]string{"cache_id": "7", "kind": "reaction", "payload": payload}
		for i := 0; i+1 < len(extra); i += 2 {
			f[extra[i]] = extra[i+1]
		}
		return f
	}
	r, err := message.DecodeEntry(message.KindMessage, "general", "1-1", entry(good, "channel_id", "room"))
	if err != nil || r.Op != message.OpReact || r.Reaction.Emoji != "👍" || r.Version != 9 || r.Message.ChannelID != "room" || string(r.Reactions) != `[{"emoji":"👍","count":1}]` {
		t.Fatalf("a good reaction: %+v %v", r, err)
	}
	if r, err := message.DecodeEntry(message.KindPrivateMessage, "", "1-1", entry(good, "owner_id", "a", "recipient_id", "b")); err != nil || r.Message.RecipientID != "b" {
		t.Fatalf("a good private reaction: %+v %v", r, err)
	}
	for _, c := range []struct {
		name   string
		stream string
		fields map[string]string
	}{
		{"empty payload", message.KindMessage, entry("")},
		{"not JSON", message.KindMessage, entry("{")},
		{"trailing data", message.KindMessage, entry(good + "{}")},
		{"unknown field", message.KindMessage, entry(strings.Replace(good, `"op"`, `"x":1,"op"`, 1))},
		{"bad op", message.KindMessage, entry(strings.Replace(good, `"add"`, `"toggle"`, 1))},
		{"empty emoji", message.KindMessage, entry(strings.Replace(good, `"emoji":"👍","user_id"`, `"emoji":"","user_id"`, 1))},
		{"long emoji", message.KindMessage, entry(strings.Replace(good, `"emoji":"👍","user_id"`, `"emoji":"`+strings.Repeat("x", 65)+`","user_id"`, 1))},
		{"user with a space", message.KindMessage, entry(strings.Replace(good, `"u2"`, `"u 2"`, 1))},
		{"no version", message.KindMessage, entry(strings.Replace(good, `,"reactions_version":9`, ``, 1))},
		{"counts not a list", message.KindMessage, entry(strings.Replace(good, `[{"emoji":"👍","count":1}]`, `{}`, 1))},
		{"counts null", message.KindMessage, entry(strings.Replace(good, `[{"emoji":"👍","count":1}]`, `null`, 1))},
		{"oversized", message.KindMessage, entry(`{"emoji":"` + strings.Repeat("x", message.MaxPayload) + `"}`)},
		{"private without users", message.KindPrivateMessage, entry(good)},
		{"bad id", message.KindMessage, map[string]string{"cache_id": "x", "kind": "reaction", "payload": good}},
	} {
		if _, err := message.DecodeEntry(c.stream, "general", "1-1", c.fields); !errors.Is(err, message.ErrBadEntry) {
			t.Errorf("%s: %v, want a bad entry", c.name, err)
		}
	}
}
