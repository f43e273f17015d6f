// Package message defines a chat message as chatpipe stores it, with the rules every input
// path validates it by, and the ring-entry JSON ({"cache_id":N,"data":{...}}) that the rings
// and flush streams carry.
package message

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Size limits of a message's fields, in bytes.
const (
	MaxIDLen       = 128
	MaxUsernameLen = 64
	MaxContentLen  = 4096
)

// Message is a chat message: the "data" of a ring entry. RecipientID is set on private
// messages only.
type Message struct {
	OwnerID     string `json:"owner_id"`
	RecipientID string `json:"recipient_id,omitempty"`
	// ChannelID is a public message's channel; "" on private messages, and on public ones
	// written before channels (they belong to the default channel).
	ChannelID string `json:"channel_id,omitempty"`
	Username  string `json:"username"`
	Content   string `json:"content"`
	CreatedAt string `json:"created_at"`
	// EditedAt is when the latest edit was accepted (the form of CreatedAt); "" until edited.
	EditedAt string `json:"edited_at,omitempty"`
}

// MaxChannelLen bounds a channel id.
const MaxChannelLen = 128

// ValidateChannel checks a channel id: 1 to 128 bytes of A-Z a-z 0-9 . _ ~ : -, which a URL path
// segment carries without escaping and which can never be a hash tag.
func ValidateChannel(field, v string) error {
	switch {
	case v == "":
		return &FieldError{field, "required"}
	case len(v) > MaxChannelLen:
		return &FieldError{field, fmt.Sprintf("longer than %d bytes", MaxChannelLen)}
	}
	for i := 0; i < len(v); i++ {
		if !channelByte[v[i]] {
			return &FieldError{field, fmt.Sprintf("byte %d (%q) is not one of A-Z a-z 0-9 . _ ~ : -", i, v[i:i+1])}
		}
	}
	return nil
}

var channelByte = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._~:-", byte(c)) >= 0
	}
	return t
}()

// FieldError names the field at fault and the problem.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid message")

// Is makes errors.Is(err, ErrInvalid) hold for a *FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// ValidateID checks an id (user or client message id): 1 to 128 bytes of valid UTF-8 with no
// whitespace or control characters.
func ValidateID(field, v string) error { return validateToken(field, v, MaxIDLen) }

// validateToken checks v as a name without spaces: 1 to max bytes of UTF-8, no whitespace or
// control characters.
func validateToken(field, v string, max int) error {
	switch {
	case v == "":
		return &FieldError{field, "required"}
	case len(v) > max:
		return &FieldError{field, fmt.Sprintf("longer than %d bytes", max)}
	case !utf8.ValidString(v):
		return &FieldError{field, "not valid UTF-8"}
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return &FieldError{field, "holds whitespace or control characters"}
	}
	return nil
}

// Validate checks m as a message of kind, and sets CreatedAt to now in UTC when it is empty.
func (m *Message) Validate(kind Kind, now time.Time) error {
	private := kind == Private
	if err := ValidateID("owner_id", m.OwnerID); err != nil {
		return err
	}
	if private {
		if err := ValidateID("recipient_id", m.RecipientID); err != nil {
			return err
		}
	} else if m.RecipientID != "" {
		return &FieldError{"recipient_id", "not allowed on a public message"}
	}
	switch {
	case private && m.ChannelID != "":
		return &FieldError{"channel_id", "not allowed on a private message"}
	case m.ChannelID != "":
		if err := ValidateChannel("channel_id", m.ChannelID); err != nil {
			return err
		}
	}
	switch {
	case len(m.Username) > MaxUsernameLen:
		return &FieldError{"username", fmt.Sprintf("longer than %d bytes", MaxUsernameLen)}
	case !utf8.ValidString(m.Username):
		return &FieldError{"username", "not valid UTF-8"}
	case strings.ContainsRune(m.Username, 0):
		return &FieldError{"username", "holds a NUL character"}
	}
	if err := ValidateContent(m.Content); err != nil {
		return err
	}
	t := now
	if m.CreatedAt != "" {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, m.CreatedAt); err != nil {
			return &FieldError{"created_at", "not an RFC 3339 time"}
		}
	}
	m.CreatedAt = FormatTime(t)
	return nil
}

// ValidateContent checks a message's text, as sent or as edited: 1 to 4096 bytes of valid UTF-8
// without NUL.
func ValidateContent(v string) error {
	switch {
	case v == "":
		return &FieldError{"content", "required"}
	case len(v) > MaxContentLen:
		return &FieldError{"content", fmt.Sprintf("longer than %d bytes", MaxContentLen)}
	case !utf8.ValidString(v):
		return &FieldError{"content", "not valid UTF-8"}
	case strings.ContainsRune(v, 0):
		return &FieldError{"content", "holds a NUL character"}
	}
	return nil
}

// FormatTime writes t as every message carries its created_at: UTC, to the microsecond, the
// precision PostgreSQL keeps, so that a message read back from PostgreSQL is the one accepted.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

// JSON encodes m as the "data" object, byte for byte as encoding/json does without HTML
// escaping (so content is kept as sent), by hand: it runs for every message accepted and every
// message a live tail sends, and the reflection of encoding/json was a tenth of ingest's CPU.
func (m *Message) JSON() []byte {
	return m.AppendJSON(make([]byte, 0, 80+len(m.OwnerID)+len(m.RecipientID)+len(m.Username)+len(m.Content)))
}

// AppendJSON appends JSON() to b.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"owner_id":`...)
	b = appendString(b, m.OwnerID)
	if m.RecipientID != "" {
		b = append(b, `,"recipient_id":`...)
		b = appendString(b, m.RecipientID)
	}
	if m.ChannelID != "" {
		b = append(b, `,"channel_id":`...)
		b = appendString(b, m.ChannelID)
	}
	b = append(b, `,"username":`...)
	b = appendString(b, m.Username)
	b = append(b, `,"content":`...)
	b = appendString(b, m.Content)
	b = append(b, `,"created_at":`...)
	b = appendString(b, m.CreatedAt)
	if m.EditedAt != "" {
		b = append(b, `,"edited_at":`...)
		b = appendString(b, m.EditedAt)
	}
	return append(b, '}')
}

// AppendJSONString appends s as a JSON string, as JSON writes every string field.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// appendString appends s as a JSON string the way encoding/json writes it with HTML escaping
// off: '"' and '\\' escaped, control characters as \b \f \n \r \t or \u00XX, U+2028 and
// U+2029 as \u2028 and \u2029 (JavaScript line terminators), invalid UTF-8 as \ufffd.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
