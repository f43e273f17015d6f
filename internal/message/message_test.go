package message_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
)

var now = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		m       message.Message
		private bool
		field   string
	}{
		{"ok", message.Message{OwnerID: "a", Content: "hi"}, false, ""},
		{"ok private", message.Message{OwnerID: "a", RecipientID: "b", Content: "hi"}, true, ""},
		{"ok key-pattern id", message.Message{OwnerID: "*?[{:}]", Content: "hi"}, false, ""},
		{"ok lua and sql content", message.Message{OwnerID: "a", Content: "redis.call('FLUSHALL'); DROP TABLE x; --"}, false, ""},
		{"empty owner", message.Message{Content: "hi"}, false, "owner_id"},
		{"owner 129 bytes", message.Message{OwnerID: strings.Repeat("a", 129), Content: "hi"}, false, "owner_id"},
		{"owner tab", message.Message{OwnerID: "a\tb", Content: "hi"}, false, "owner_id"},
		{"owner invalid utf8", message.Message{OwnerID: "a\xff", Content: "hi"}, false, "owner_id"},
		{"owner unicode space", message.Message{OwnerID: "a\u00a0b", Content: "hi"}, false, "owner_id"},
		{"recipient on public", message.Message{OwnerID: "a", RecipientID: "b", Content: "hi"}, false, "recipient_id"},
		{"no recipient on private", message.Message{OwnerID: "a", Content: "hi"}, true, "recipient_id"},
		{"username 65", message.Message{OwnerID: "a", Username: strings.Repeat("u", 65), Content: "hi"}, false, "username"},
		{"username NUL", message.Message{OwnerID: "a", Username: "u\x00", Content: "hi"}, false, "username"},
		{"empty content", message.Message{OwnerID: "a"}, false, "content"},
		{"content 4097", message.Message{OwnerID: "a", Content: strings.Repeat("c", 4097)}, false, "content"},
		{"content 4096 multibyte", message.Message{OwnerID: "a", Content: strings.Repeat("é", 2048)}, false, ""},
		{"content NUL", message.Message{OwnerID: "a", Content: "a\x00b"}, false, "content"},
		{"content invalid utf8", message.Message{OwnerID: "a", Content: "\xc3\x28"}, false, "content"},
		{"bad created_at", message.Message{OwnerID: "a", Content: "x", CreatedAt: "2026-13-01T00:00:00Z"}, false, "created_at"},
		{"created_at without zone", message.Message{OwnerID: "a", Content: "x", CreatedAt: "2026-11-25T10:00:00"}, false, "created_at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := tt.m
			kind := message.Public
			if tt.private {
				kind = message.Private
			}
			err := m.Validate(kind, now)
			var fe *message.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tt.field != "" && (!errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, message.ErrInvalid)):
				t.Fatalf("err = %v, want a FieldError on %s", err, tt.field)
			case tt.field == "" && tt.m.CreatedAt == "" && m.CreatedAt != "2026-11-25T10:00:00Z":
				t.Fatalf("created_at = %q, want the server's time in UTC", m.CreatedAt)
			}
		})
	}
}

func TestJSONKeepsContent(t *testing.T) {
	t.Parallel()
	m := message.Message{OwnerID: "a", Content: `<b>&"quoted"</b>`, CreatedAt: "2026-11-25T10:00:00Z"}
	if got := string(m.JSON()); !strings.Contains(got, `"content":"<b>&\"quoted\"</b>"`) {
		t.Fatalf("JSON = %s, want content unescaped but for the quotes", got)
	}
}

func entry(id, kind, payload string) map[string]string {
	return map[string]string{"cache_id": id, "kind": kind, "payload": payload}
}

func with(fields map[string]string, k, v string) map[string]string {
	fields[k] = v
	return fields
}

// TestDecodeEntryChannel: a public message or deletion carries its channel (the payload's, the
// deletion entry's), and one written before channels gets the default channel; a private one
// has none.
func TestDecodeEntryChannel(t *testing.T) {
	t.Parallel()
	old := `{"cache_id":7,"data":{"owner_id":"a","username":"A","content":"hi","created_at":"2026-11-25T10:00:00Z"}}`
	named := strings.Replace(old, `"owner_id":"a"`, `"owner_id":"a","channel_id":"Org:Room~1"`, 1)
	for _, tt := range []struct {
		name, stream string
		fields       map[string]string
		want         string
	}{
		{"from before channels", message.KindMessage, entry("7", "message", old), "lobby"},
		{"named in the payload", message.KindMessage, entry("7", "message", named), "Org:Room~1"},
		{"named in both", message.KindMessage, with(entry("7", "message", named), "channel_id", "Org:Room~1"), "Org:Room~1"},
		{"a deletion naming it", message.KindMessage, with(entry("7", "delete", ""), "channel_id", "team-42.general"), "team-42.general"},
		{"a deletion from before channels", message.KindMessage, entry("7", "delete", ""), "lobby"},
		{"a private deletion", message.KindPrivateMessage, entry("7", "delete", ""), ""},
	} {
		r, err := message.DecodeEntry(tt.stream, "lobby", "1-0", tt.fields)
		if err != nil || r.Message.ChannelID != tt.want {
			t.Errorf("%s: channel %q (%v), want %q", tt.name, r.Message.ChannelID, err, tt.want)
		}
	}
}

// TestValidateChannel: the channel ids of every shape a chat server uses pass; anything that is
// not 1–128 bytes of A-Z a-z 0-9 . _ ~ : - fails naming the field.
func TestValidateChannel(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"general", "3f2b8c1e-9a4d-4f6e-8b2a-1c3d5e7f9a0b", "1234567890", "team-42.general", "Org:Room~1", "_", strings.Repeat("a", 128)} {
		if err := message.ValidateChannel("channel", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", 129), "{general}", "a/b", "a%2Fb", "a\x00b", "a b", "sal\u00e9", "tab\t", "emoji\U0001F600", "semi;colon", "q?x", "hash#"} {
		err := message.ValidateChannel("channel", bad)
		if fe, ok := errors.AsType[*message.FieldError](err); !ok || fe.Field != "channel" {
			t.Errorf("%q: %v, want a FieldError on channel", bad, err)
		}
	}
}

func TestDecodeEntry(t *testing.T) {
	t.Parallel()
	good := `{"cache_id":7,"data":{"owner_id":"a","username":"A","content":"hi","created_at":"2026-11-25T10:00:00Z"}}`
	goodPrivate := `{"cache_id":7,"data":{"owner_id":"a","recipient_id":"b","content":"hi","created_at":"2026-11-25T10:00:00Z"}}`
	channelled := strings.Replace(good, `"owner_id":"a"`, `"owner_id":"a","channel_id":"room-1"`, 1)
	tests := []struct {
		name    string
		stream  string
		fields  map[string]string
		wantErr string
	}{
		{"public", message.KindMessage, entry("7", "message", good), ""},
		{"private", message.KindPrivateMessage, entry("7", "private_message", goodPrivate), ""},
		{"delete", message.KindMessage, entry("7", "delete", ""), ""},
		{"empty fields", message.KindMessage, map[string]string{}, "no cache_id"},
		{"cache_id not a number", message.KindMessage, entry("seven", "message", good), "not a positive integer"},
		{"cache_id negative", message.KindMessage, entry("-7", "message", good), "not a positive integer"},
		{"cache_id overflow", message.KindMessage, entry("99999999999999999999", "message", good), "not a positive integer"},
		{"missing kind", message.KindMessage, map[string]string{"cache_id": "7", "payload": good}, "does not belong"},
		{"private on public stream", message.KindMessage, entry("7", "private_message", goodPrivate), "does not belong"},
		{"empty payload", message.KindMessage, entry("7", "message", ""), "no payload"},
		{"not json", message.KindMessage, entry("7", "message", "{oops"), "not a ring entry"},
		{"json array", message.KindMessage, entry("7", "message", "[1,2]"), "not a ring entry"},
		{"wrong types", message.KindMessage, entry("7", "message", `{"cache_id":"7","data":{}}`), "not a ring entry"},
		{"no data", message.KindMessage, entry("7", "message", `{"cache_id":7}`), "lacks"},
		{"ids differ", message.KindMessage, entry("7", "message", strings.Replace(good, ":7,", ":8,", 1)), "differs"},
		{"no owner", message.KindMessage, entry("7", "message", `{"cache_id":7,"data":{"content":"x","created_at":"2026-11-25T10:00:00Z"}}`), "no owner_id"},
		{"private without recipient", message.KindPrivateMessage, entry("7", "private_message", good), "no recipient_id"},
		{"bad time", message.KindMessage, entry("7", "message", strings.Replace(good, "2026-11-25T10:00:00Z", "soon", 1)), "RFC 3339"},
		{"trailing data", message.KindMessage, entry("7", "message", good+"{}"), "after the ring entry"},
		{"huge payload", message.KindMessage, entry("7", "message", strings.Repeat(" ", message.MaxPayload+1)), "more than"},
		{"private with a channel", message.KindPrivateMessage, entry("7", "private_message", strings.Replace(goodPrivate, `"owner_id"`, `"channel_id":"c","owner_id"`, 1)), "has a channel_id"},
		{"channels differ", message.KindMessage, with(entry("7", "message", channelled), "channel_id", "room-2"), "differs from the payload's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := message.DecodeEntry(tt.stream, "", "1-0", tt.fields)
			if tt.wantErr == "" {
				if err != nil || r.CacheID != 7 || r.StreamID != "1-0" {
					t.Fatalf("DecodeEntry = %+v, %v", r, err)
				}
				return
			}
			if !errors.Is(err, message.ErrBadEntry) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want a bad entry mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkDecodeEntry(b *testing.B) {
	m := message.Message{OwnerID: "user1", Username: "User", Content: "a typical chat message of some fifty bytes or so....", CreatedAt: "2026-11-25T10:00:00Z"}
	fields := map[string]string{"cache_id": "7", "kind": "message", "payload": `{"cache_id":7,"data":` + string(m.JSON()) + `}`}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := message.DecodeEntry(message.KindMessage, "", "1-0", fields); err != nil {
			b.Fatal(err)
		}
	}
}
