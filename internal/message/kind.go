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

// DefaultChannel is the name of the public room of a deployment from before channels, unless
// DEFAULT_CHANNEL names it otherwise: migration 003 puts the existing public rows in it.
const DefaultChannel = "general"

// Timeline names a sequence of messages a reader follows: a channel's, or one user's private
// messages (sent and received). It is comparable, so it may key a map or a single flight.
type Timeline struct {
	Kind Kind
	// User is the private timeline's user; "" for a channel.
	User string
	// Channel is the channel's id; "" for a private timeline.
	Channel string
}

// Ref names one message for a deletion or an edit: its kind and id, and where it is as far as
// it is known — a public message's channel, a private message's two users ("" when unknown).
type Ref struct {
	Kind    Kind
	CacheID int64
	// ChannelID is a public message's channel.
	ChannelID string
	// OwnerID and RecipientID are a private message's users.
	OwnerID, RecipientID string
}

// Who is the message as far as r places it, for key builders.
func (r Ref) Who() Message {
	return Message{OwnerID: r.OwnerID, RecipientID: r.RecipientID, ChannelID: r.ChannelID}
}

// ChannelTimeline is the public messages of channel.
func ChannelTimeline(channel string) Timeline { return Timeline{Kind: Public, Channel: channel} }

// PrivateTimeline is user's private messages.
func PrivateTimeline(user string) Timeline { return Timeline{Kind: Private, User: user} }

// Timelines are the timelines a message of kind belongs to: its channel's, or its users' (one
// for a self-DM).
func (m *Message) Timelines(kind Kind) []Timeline {
	switch {
	case kind == Public:
		return []Timeline{ChannelTimeline(m.ChannelID)}
	case m.RecipientID == "" || m.RecipientID == m.OwnerID:
		return []Timeline{PrivateTimeline(m.OwnerID)}
	}
	return []Timeline{PrivateTimeline(m.OwnerID), PrivateTimeline(m.RecipientID)}
}

// Name is the timeline's channel, or its user.
func (t Timeline) Name() string {
	if t.Kind == Private {
		return t.User
	}
	return t.Channel
}

// Contains reports whether the record, a message or a deletion of the timeline's kind, belongs
// to the timeline. A private deletion that names no users belongs to no private timeline: only
// the rings and history, not the tails, learn of it. Records are decoded with their channel
// (DecodeEntry gives the default one to those written before channels).
func (t Timeline) Contains(r *Record) bool {
	if t.Kind == Public {
		return r.Message.ChannelID == t.Channel
	}
	return r.Message.OwnerID == t.User || r.Message.RecipientID == t.User
}
