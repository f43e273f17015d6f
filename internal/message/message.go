// Package message defines a chat message as chatpipe stores it, with the rules every input
// path validates it by, and the ring-entry JSON ({"cache_id":N,"data":{...}}) that the rings
// and flush streams carry.
package message

import (
	"bytes"
	"encoding/json"
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
	Username    string `json:"username"`
	Content     string `json:"content"`
	CreatedAt   string `json:"created_at"`
}

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
func ValidateID(field, v string) error {
	switch {
	case v == "":
		return &FieldError{field, "required"}
	case len(v) > MaxIDLen:
		return &FieldError{field, fmt.Sprintf("longer than %d bytes", MaxIDLen)}
	case !utf8.ValidString(v):
		return &FieldError{field, "not valid UTF-8"}
	case strings.IndexFunc(v, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return &FieldError{field, "holds whitespace or control characters"}
	}
	return nil
}

// Validate checks m as a public message (private false) or a private one, and sets CreatedAt to
// now in UTC when it is empty.
func (m *Message) Validate(private bool, now time.Time) error {
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
	case len(m.Username) > MaxUsernameLen:
		return &FieldError{"username", fmt.Sprintf("longer than %d bytes", MaxUsernameLen)}
	case !utf8.ValidString(m.Username):
		return &FieldError{"username", "not valid UTF-8"}
	case strings.ContainsRune(m.Username, 0):
		return &FieldError{"username", "holds a NUL character"}
	case m.Content == "":
		return &FieldError{"content", "required"}
	case len(m.Content) > MaxContentLen:
		return &FieldError{"content", fmt.Sprintf("longer than %d bytes", MaxContentLen)}
	case !utf8.ValidString(m.Content):
		return &FieldError{"content", "not valid UTF-8"}
	case strings.ContainsRune(m.Content, 0):
		return &FieldError{"content", "holds a NUL character"}
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

// FormatTime writes t as every message carries its created_at: UTC, to the microsecond, the
// precision PostgreSQL keeps, so that a message read back from PostgreSQL is the one accepted.
func FormatTime(t time.Time) string {
	return t.UTC().Truncate(time.Microsecond).Format(time.RFC3339Nano)
}

// JSON encodes m as the "data" object, without HTML escaping so that content is kept as sent.
func (m *Message) JSON() []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(m) // cannot fail: strings only
	return bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})
}
