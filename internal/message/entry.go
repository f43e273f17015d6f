package message

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Entry kinds, the "kind" field of a flush-stream entry.
const (
	KindMessage        = "message"
	KindPrivateMessage = "private_message"
	KindDelete         = "delete"
	// KindEdit is an edit of a message of the stream's kind; its payload is the whole new
	// ring entry, with its version.
	KindEdit = "edit"
	// KindReaction adds or removes one user's emoji on a message of the stream's kind; its
	// payload is the toggle and the message's whole reaction counts after it (Reaction).
	KindReaction = "reaction"
)

// The fields of a flush-stream entry, for Go. The scripts that write entries name them in one
// Lua file (internal/lua/entry.lua); TestEntryFieldsAgree holds the two lists together. Every
// other field an entry may carry on its way (a dead letter's) belongs to package streams, and
// replaying a dead letter copies back every field but those.
const (
	FieldCacheID     = "cache_id"
	FieldKind        = "kind"
	FieldPayload     = "payload"      // the ring entry; empty for a deletion
	FieldOwnerID     = "owner_id"     // a private deletion's users, for the private tails
	FieldRecipientID = "recipient_id" //
	FieldChannelID   = "channel_id"   // a public message's or deletion's channel
)

// EntryFields lists every field of a flush-stream entry.
var EntryFields = []string{FieldCacheID, FieldKind, FieldPayload, FieldOwnerID, FieldRecipientID, FieldChannelID}

// AppendEnvelope appends the ring entry {"cache_id":id,"version":version,"data":data} of the
// message JSON data.
func AppendEnvelope(b []byte, id, version int64, data []byte) []byte {
	b = append(b, `{"cache_id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, version, 10)
	b = append(b, `,"data":`...)
	b = append(b, data...)
	return append(b, '}')
}

// DeletionJSON is the record's deletion as the live tail sends it: {"cache_id":N}, with the
// channel of a public message ({"cache_id":N,"channel_id":"…"}).
func (r *Record) DeletionJSON() []byte { return r.refJSON(0) }

// refJSON is {"cache_id":N} with a public message's "channel_id", in room for extra more bytes.
func (r *Record) refJSON(extra int) []byte {
	b := append(make([]byte, 0, 40+len(r.Message.ChannelID)+extra), `{"cache_id":`...)
	b = strconv.AppendInt(b, r.CacheID, 10)
	if r.Message.ChannelID != "" {
		b = append(b, `,"channel_id":`...)
		b = appendString(b, r.Message.ChannelID)
	}
	return append(b, '}')
}

// DecodeRingEntry decodes the ring entry payload of a message of streamKind with id, as
// DecodeEntry decodes a stream entry carrying it.
func DecodeRingEntry(streamKind, defaultChannel string, id int64, payload string) (Record, error) {
	return DecodeEntry(streamKind, defaultChannel, "", map[string]string{
		FieldCacheID: strconv.FormatInt(id, 10), FieldKind: streamKind, FieldPayload: payload})
}

// Record is one decoded flush-stream entry: a message to write, or a deletion.
type Record struct {
	// StreamID is the entry's id in the flush stream.
	StreamID string
	// CacheID is the message's id.
	CacheID int64
	// Op is what the entry does to message CacheID.
	Op Op
	// Message is the message to write.
	Message Message
	// CreatedAt is Message.CreatedAt parsed.
	CreatedAt time.Time
	// Version is the message's version: its cache id until edited, then the edit's (from the
	// same sequence, so higher). 0 on a deletion.
	Version int64
	// EditedAt is Message.EditedAt parsed; zero until edited.
	EditedAt time.Time
	// Reaction is an OpReact's toggle and counts; nil on every other operation.
	Reaction *Reaction
	// Reactions are the message's reaction counts as read with it (Counts' JSON), nil when it
	// has none; ReactionsVersion their version (0: none yet).
	Reactions        []byte
	ReactionsVersion int64
}

// Op is the operation of a flush-stream entry on its message. Code that acts on records
// switches on it exhaustively, so that a new operation (an edit) meets every place it must.
type Op uint8

const (
	// OpPost writes a message (Record.Message).
	OpPost Op = iota
	// OpDelete deletes message CacheID; Record.Message holds at most its users.
	OpDelete
	// OpEdit replaces message CacheID with Record.Message at Record.Version, unless a higher
	// version is stored or the message was deleted.
	OpEdit
	// OpReact adds or removes Record.Reaction's emoji of its user on message CacheID, at
	// Record.Version (the reactions' version, never the message's); Record.Message holds at
	// most the message's channel or users.
	OpReact
)

// String names the operation as the tail's event types do.
func (o Op) String() string {
	switch o {
	case OpPost:
		return "message"
	case OpDelete:
		return "delete"
	case OpEdit:
		return "edit"
	case OpReact:
		return "reaction"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// ErrBadEntry is wrapped by every decoding error of a flush-stream entry.
var ErrBadEntry = errors.New("bad stream entry")

func badEntry(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadEntry, fmt.Sprintf(format, args...))
}

// MaxPayload bounds a payload: a ring entry of the largest valid message is far smaller.
const MaxPayload = 64 << 10

// DecodeEntry decodes the fields of a flush-stream entry of a stream holding kind (KindMessage
// or KindPrivateMessage). It checks the entry's shape, not the rules Postgres enforces on the
// values: those reject the row when it is written, and the row alone is dead-lettered. A public
// message or deletion that names no channel (written before channels) is given defaultChannel.
func DecodeEntry(streamKind, defaultChannel, streamID string, fields map[string]string) (Record, error) {
	r := Record{StreamID: streamID}
	rawID, ok := fields[FieldCacheID]
	if !ok {
		return r, badEntry("no cache_id field")
	}
	id, err := strconv.ParseInt(rawID, 10, 64)
	if err != nil || id < 1 {
		return r, badEntry("cache_id %.40q is not a positive integer", rawID)
	}
	r.CacheID = id
	switch kind := fields[FieldKind]; kind {
	case KindDelete:
		// A private deletion may name its users (for the live tail); a public one names none.
		r.Op = OpDelete
		r.Message.OwnerID, r.Message.RecipientID = fields[FieldOwnerID], fields[FieldRecipientID]
		if streamKind == KindMessage {
			r.Message.ChannelID = cmp.Or(fields[FieldChannelID], defaultChannel)
		}
		return r, nil
	case KindReaction:
		return decodeReaction(r, streamKind, defaultChannel, fields)
	case streamKind:
	case KindEdit:
		r.Op = OpEdit
	default:
		return r, badEntry("kind %.40q does not belong on the %s stream", kind, streamKind)
	}
	payload, ok := fields[FieldPayload]
	switch {
	case !ok || payload == "":
		return r, badEntry("no payload")
	case len(payload) > MaxPayload:
		return r, badEntry("payload of %d bytes, more than %d", len(payload), MaxPayload)
	}
	e, ok := scanEntry(payload)
	if !ok {
		e = ringEntry{} // what the scan filled before it gave up is not kept
		if err := json.Unmarshal([]byte(payload), &e); err != nil {
			if se, ok := errors.AsType[*json.SyntaxError](err); ok && strings.Contains(se.Error(), "after top-level value") {
				return r, badEntry("payload has data after the ring entry")
			}
			return r, badEntry("payload is not a ring entry: %v", err)
		}
	}
	switch {
	case e.CacheID == nil || e.Data == nil:
		return r, badEntry("payload lacks cache_id or data")
	case *e.CacheID != id:
		return r, badEntry("payload cache_id %d differs from the entry's %d", *e.CacheID, id)
	case e.Data.OwnerID == "":
		return r, badEntry("payload has no owner_id")
	case streamKind == KindPrivateMessage && e.Data.RecipientID == "":
		return r, badEntry("private message has no recipient_id")
	case streamKind == KindPrivateMessage && e.Data.ChannelID != "":
		return r, badEntry("private message has a channel_id")
	case fields[FieldChannelID] != "" && fields[FieldChannelID] != e.Data.ChannelID:
		return r, badEntry("the entry's channel_id %.40q differs from the payload's %.40q", fields[FieldChannelID], e.Data.ChannelID)
	}
	if streamKind == KindMessage && e.Data.ChannelID == "" {
		e.Data.ChannelID = defaultChannel
	}
	t, err := time.Parse(time.RFC3339Nano, e.Data.CreatedAt)
	if err != nil {
		return r, badEntry("created_at %.40q is not an RFC 3339 time", e.Data.CreatedAt)
	}
	r.Message, r.CreatedAt, r.Version = *e.Data, t, id
	if e.Version != nil {
		r.Version = *e.Version
	}
	switch {
	case r.Version < id:
		return r, badEntry("version %d is below the cache id %d", r.Version, id)
	case r.Op == OpEdit && (r.Version == id || e.Data.EditedAt == ""):
		return r, badEntry("an edit needs a version above the cache id and an edited_at")
	}
	if e.Data.EditedAt != "" {
		if r.EditedAt, err = time.Parse(time.RFC3339Nano, e.Data.EditedAt); err != nil {
			return r, badEntry("edited_at %.40q is not an RFC 3339 time", e.Data.EditedAt)
		}
	}
	return r, nil
}

// JSON is the record's ring entry as the read side answers with it, with its reactions when it
// has any, whatever source it came
// from: {"cache_id":N,"version":V,"data":{...}} with created_at in the one form PostgreSQL gives back (UTC,
// microseconds), so that a message read from a ring, a stream or a table is the same bytes.
func (r *Record) JSON() []byte {
	m := r.Message
	m.CreatedAt, m.EditedAt = FormatTime(r.CreatedAt), ""
	if !r.EditedAt.IsZero() {
		m.EditedAt = FormatTime(r.EditedAt)
	}
	b := make([]byte, 0, 160+len(m.Content)+len(m.Username)+len(m.OwnerID)+len(m.RecipientID))
	b = append(b, `{"cache_id":`...)
	b = strconv.AppendInt(b, r.CacheID, 10)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, max(r.Version, r.CacheID), 10)
	b = append(b, `,"data":`...)
	b = m.AppendJSON(b) // in place: AppendEnvelope would copy the data once more
	b = append(b, '}')
	if len(r.Reactions) > 0 {
		b = WithReactions(b, r.Reactions, r.ReactionsVersion)
	}
	return b
}
