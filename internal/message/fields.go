package message

// FieldType is how a message field is written: its JSON form, and its PostgreSQL type.
type FieldType uint8

const (
	// String is a JSON string and a text column.
	String FieldType = iota
	// Time is an RFC 3339 JSON string (FormatTime) and a timestamptz column.
	Time
	// Int is a JSON number and a bigint column.
	Int
)

func (t FieldType) String() string {
	switch t {
	case String:
		return "string"
	case Time:
		return "time"
	case Int:
		return "int"
	}
	return "unknown"
}

// Field is one field of a message, as every representation of a message must carry it: the Go
// struct Message and its codec (JSON, DecodeRingEntry), the PostgreSQL tables and their scans,
// the edit script's splice, ingest's request decoders, the Go client's Message and the OpenAPI
// Message schema. TestFieldsConform (internal/api) checks each of them against this table and
// names every place a field is missing from: a new field starts here (docs/extending.md).
type Field struct {
	// JSON is the field's key in the message's JSON data.
	JSON string
	Type FieldType
	// Kinds are the kinds of message that carry it.
	Kinds []Kind
	// Column is its column in the kinds' PostgreSQL tables.
	Column string
	// Request says a send's request body carries it (else the server sets it, or the path).
	Request bool
}

var (
	bothKinds   = []Kind{Public, Private}
	publicOnly  = []Kind{Public}
	privateOnly = []Kind{Private}
)

// Fields is the table of a message's fields, in the order Message's JSON writes them.
var Fields = []Field{
	{JSON: "owner_id", Type: String, Kinds: bothKinds, Column: "owner_id", Request: true},
	{JSON: "recipient_id", Type: String, Kinds: privateOnly, Column: "recipient_id", Request: true},
	{JSON: "channel_id", Type: String, Kinds: publicOnly, Column: "channel_id"}, // the path's
	{JSON: "username", Type: String, Kinds: bothKinds, Column: "username", Request: true},
	{JSON: "content", Type: String, Kinds: bothKinds, Column: "content", Request: true},
	{JSON: "created_at", Type: Time, Kinds: bothKinds, Column: "created_at", Request: true},
	{JSON: "edited_at", Type: Time, Kinds: bothKinds, Column: "edited_at"}, // set by an edit
}

// Of reports whether the field is carried by messages of kind.
func (f Field) Of(kind Kind) bool {
	for _, k := range f.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}
