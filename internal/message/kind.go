package message

// Kind is the kind of a chat message: public or private. It names the flush stream (and the
// PostgreSQL table) a message goes to.
type Kind int

const (
	// Public messages are visible to everybody.
	Public Kind = iota
	// Private messages go from one user to another.
	Private
)

// String returns the kind's name as written in the `kind` field of a flush-stream entry.
func (k Kind) String() string {
	if k == Private {
		return KindPrivateMessage
	}
	return KindMessage
}

// Kinds lists every kind, public first.
var Kinds = [...]Kind{Public, Private}

// Timeline names a sequence of messages a reader follows: the public room, or one user's private
// messages (sent and received). It is comparable, so it may key a map or a single flight.
type Timeline struct {
	Kind Kind
	// User is the private timeline's user; "" for the public one.
	User string
}

// PublicTimeline is the public room.
var PublicTimeline = Timeline{Kind: Public}

// PrivateTimeline is user's private messages.
func PrivateTimeline(user string) Timeline { return Timeline{Kind: Private, User: user} }

// Contains reports whether the record, a message or a deletion of the timeline's kind, belongs
// to the timeline. A private deletion that names no users belongs to no private timeline: only
// the rings and history, not the tails, learn of it.
func (t Timeline) Contains(r *Record) bool {
	if t.Kind == Public {
		return true
	}
	return r.Message.OwnerID == t.User || r.Message.RecipientID == t.User
}
