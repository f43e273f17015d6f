package message

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxEmojiLen bounds an emoji: a Unicode emoji sequence or a :short_code:.
const MaxEmojiLen = 64

// Reaction is one toggle of a user's emoji on a message and the message's whole counts after
// it, as a reaction entry's payload carries them: the worker writes the toggle's row and the
// counts, the tail sends the counts (clients replace theirs, never increment).
type Reaction struct {
	Emoji  string `json:"emoji"`
	UserID string `json:"user_id"`
	// Op is "add" or "remove".
	Op string `json:"op"`
	// Reactions is the message's counts after the toggle: a JSON array of Count, in the order
	// each emoji was first added.
	Reactions json.RawMessage `json:"reactions"`
	// Version is the reactions' version after the toggle (from the stream's id sequence).
	Version int64 `json:"reactions_version"`
}

// Add says whether the toggle adds the emoji (else it removes it).
func (r *Reaction) Add() bool { return r.Op == ReactAdd }

// The toggles of a reaction.
const (
	ReactAdd    = "add"
	ReactRemove = "remove"
)

// Count is one emoji's count on a message; Me marks the emoji the viewer reacted with.
type Count struct {
	Emoji string `json:"emoji"`
	Count int64  `json:"count"`
	Me    bool   `json:"me,omitempty"`
}

// ValidateEmoji checks an emoji as a reaction names it: 1 to MaxEmojiLen bytes of UTF-8, no
// whitespace or control characters. No list of emoji is kept: a Unicode emoji and a
// :short_code: are both fine.
func ValidateEmoji(e string) error { return validateToken("emoji", e, MaxEmojiLen) }

// decodeReaction decodes a reaction entry of a stream of streamKind into r (its id is read):
// the toggle, its version, and the message's channel or users, for the tails.
func decodeReaction(r Record, streamKind, defaultChannel string, fields map[string]string) (Record, error) {
	r.Op = OpReact
	payload := fields[FieldPayload]
	if len(payload) > MaxPayload {
		return r, badEntry("payload of %d bytes, more than %d", len(payload), MaxPayload)
	}
	var x Reaction
	d := json.NewDecoder(strings.NewReader(payload))
	d.DisallowUnknownFields()
	if err := d.Decode(&x); err != nil {
		return r, badEntry("reaction payload: %v", err)
	}
	if d.More() {
		return r, badEntry("reaction payload has data after its object")
	}
	var counts []Count
	switch {
	case ValidateEmoji(x.Emoji) != nil:
		return r, badEntry("reaction emoji %.40q is not one", x.Emoji)
	case ValidateID("user_id", x.UserID) != nil:
		return r, badEntry("reaction user_id %.40q is not one", x.UserID)
	case x.Op != ReactAdd && x.Op != ReactRemove:
		return r, badEntry("reaction op %.40q is not add or remove", x.Op)
	case x.Version < 1:
		return r, badEntry("reaction has no reactions_version")
	case json.Unmarshal(x.Reactions, &counts) != nil || counts == nil:
		return r, badEntry("reaction counts are not a list of counts")
	}
	if streamKind == KindPrivateMessage {
		r.Message.OwnerID, r.Message.RecipientID = fields[FieldOwnerID], fields[FieldRecipientID]
		if r.Message.OwnerID == "" || r.Message.RecipientID == "" {
			return r, badEntry("a private reaction names no users")
		}
	} else {
		r.Message.ChannelID = cmp.Or(fields[FieldChannelID], defaultChannel)
	}
	r.Reaction, r.Version = &x, x.Version
	r.Reactions, r.ReactionsVersion = x.Reactions, x.Version
	return r, nil
}

// WithReactions returns the ring entry b ({"cache_id":…,"data":{…}}) with the message's reaction
// counts (a JSON array) and their version after its data, in b's array when it has room.
func WithReactions(b, reactions []byte, version int64) []byte {
	b = bytes.TrimRight(b, " \n")
	if len(b) == 0 || b[len(b)-1] != '}' {
		return b
	}
	b = append(b[:len(b)-1], `,"reactions":`...)
	b = append(b, reactions...)
	b = append(b, `,"reactions_version":`...)
	b = strconv.AppendInt(b, version, 10)
	return append(b, '}')
}

// ReactionJSON is the record's reaction event as the live tail sends it: {"cache_id":N,
// "channel_id":"…" (public),"reactions":[…],"reactions_version":R}.
func (r *Record) ReactionJSON() []byte {
	return WithReactions(r.refJSON(len(r.Reactions)+40), r.Reactions, r.ReactionsVersion)
}

// MarkMine returns counts (a JSON array of Count, as AppendCounts writes it) with "me":true on
// the emoji of mine, each a JSON string as AppendJSONString writes it; counts itself is not
// changed. An emoji of mine the counts do not have is skipped.
func MarkMine(counts []byte, mine []string) []byte {
	if len(mine) == 0 {
		return counts
	}
	out := slices.Clone(counts)
	for _, q := range mine {
		key := append(append([]byte(`{"emoji":`), q...), `,"count":`...)
		at := bytes.Index(out, key)
		if at < 0 {
			continue
		}
		end := at + len(key) + bytes.IndexByte(out[at+len(key):], '}')
		if end < at+len(key) || bytes.HasSuffix(out[:end], []byte(`,"me":true`)) {
			continue
		}
		out = slices.Insert(out, end, []byte(`,"me":true`)...)
	}
	return out
}

// AppendCounts appends cs as the JSON array the reaction script writes: the emoji encoded as
// every string of a message (AppendJSONString), so the counts are the same bytes from every
// source.
func AppendCounts(b []byte, cs []Count) []byte {
	b = append(b, '[')
	for i, c := range cs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"emoji":`...)
		b = appendString(b, c.Emoji)
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, c.Count, 10)
		if c.Me {
			b = append(b, `,"me":true`...)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// ParseCounts decodes reaction counts (a JSON array of Count).
func ParseCounts(b []byte) ([]Count, error) {
	var cs []Count
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, fmt.Errorf("reaction counts: %w", err)
	}
	return cs, nil
}

// reactionsKey begins the reactions a ring entry carries (WithReactions): at the entry's top
// level, after its data, where no string of the message can put an unescaped quote.
var reactionsKey = []byte(`,"reactions":[`)

// SplitReactions returns the ring entry b without the reactions it carries, and those (nil and
// 0 when it carries none).
func SplitReactions(b []byte) (base, counts []byte, version int64) {
	at := bytes.LastIndex(b, reactionsKey)
	if at < 0 {
		return b, nil, 0
	}
	rest := b[at+len(reactionsKey)-1:]
	end := bytes.LastIndex(rest, []byte(`,"reactions_version":`))
	if end < 0 {
		return b, nil, 0
	}
	v, err := strconv.ParseInt(string(bytes.TrimRight(rest[end+len(`,"reactions_version":`):], "} \n")), 10, 64)
	if err != nil {
		return b, nil, 0
	}
	return append(b[:at:at], '}'), rest[:end], v
}

// UnquoteJSONString is the value of the JSON string q ("" when q is not one).
func UnquoteJSONString(q string) string {
	var s string
	_ = json.Unmarshal([]byte(q), &s)
	return s
}
