package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
)

// React is one user's toggle of an emoji on a message.
type React struct {
	Kind    message.Kind
	CacheID int64
	// ChannelID is a public message's channel (the path's).
	ChannelID string
	UserID    string
	Emoji     string
	Add       bool
	// Loaded is what ingest found of a message whose reactions are not hot (ErrLookup): nil
	// to have the script find it.
	Loaded *Loaded
}

// Loaded is a message's reactions as PostgreSQL holds them, and its place.
type Loaded struct {
	// OwnerID and RecipientID are a private message's users.
	OwnerID, RecipientID string
	Counts               []message.Count
	// Version is the counts' version (0: none).
	Version int64
	// Mine are the emoji the reacting user has on the message, with the version of each.
	Mine []Mine
}

// Mine is one emoji a user has on a message, and the version it was added at.
type Mine struct {
	Emoji   string
	Version int64
}

// Reacted is a toggle's outcome: the message's counts after it (a JSON array of
// message.Count), their version, and whether it changed them (a repeated add, or the removal
// of a reaction that is not there, changes nothing and writes nothing).
type Reacted struct {
	Counts  []byte
	Version int64
	Changed bool
}

// reactCall is react.lua's call for x by its plan p (the reacting user's rate limit, the
// timeline's backlog index).
func reactCall(cfg Config, p *keyspace.Plan, x React) lua.Call {
	rate := [3]string{p.Settings, p.Rate[0], p.Rate[1]}
	if p.RateApart {
		rate = [3]string{p.Stream, p.Stream, p.Stream}
	}
	op := message.ReactRemove
	if x.Add {
		op = message.ReactAdd
	}
	mode, place, counts, version, mine := "find", x.ChannelID, "", "", ""
	if x.Kind == message.Private {
		place = ""
	}
	if l := x.Loaded; l != nil {
		mode, version = "load", strconv.FormatInt(l.Version, 10)
		if x.Kind == message.Private {
			place = l.OwnerID + "\x1f" + l.RecipientID
		}
		var b strings.Builder
		for i, c := range l.Counts {
			if i > 0 {
				b.WriteByte('\x1f')
			}
			b.Write(message.AppendJSONString(nil, c.Emoji))
			b.WriteByte('\x1f')
			b.WriteString(strconv.FormatInt(c.Count, 10))
		}
		counts = b.String()
		quoted := make([]string, 0, 2*len(l.Mine))
		for _, m := range l.Mine {
			quoted = append(quoted, string(message.AppendJSONString(nil, m.Emoji)), strconv.FormatInt(m.Version, 10))
		}
		mine = strings.Join(quoted, "\x1f")
	}
	keys := []string{p.Counter, p.Stream, p.PendingDeletes, keyspace.Reactions(p.Stream, x.CacheID), p.Indexes[0], rate[0], rate[1], rate[2]}
	return lua.Call{Keys: keys, Args: []string{
		strconv.FormatInt(x.CacheID, 10), strconv.FormatInt(cfg.BacklogCap, 10), p.Partition, flag(cfg.IDs == ClockIDs),
		strconv.Itoa(cfg.DefaultRate.Limit), strconv.Itoa(cfg.DefaultRate.WindowSeconds), string(cfg.DefaultRate.Algorithm),
		op, string(message.AppendJSONString(nil, x.Emoji)), x.UserID, string(message.AppendJSONString(nil, x.UserID)),
		strconv.Itoa(cfg.MaxReactions), strconv.FormatInt(cfg.RingTTL.Milliseconds(), 10), mode,
		place, counts, version, mine, flag(x.Kind == message.Private)}}
}

// reactResult maps react.lua's reply; refused says the toggle wrote nothing (a refusal, or no
// change), so a token taken apart is given back.
func reactResult(v []valkey.ValkeyMessage, err error) (_ Reacted, refused bool, _ error) {
	if err != nil {
		return Reacted{}, false, classify(err)
	}
	if len(v) != 4 {
		return Reacted{}, false, fmt.Errorf("react: %d values in the answer, want 4", len(v))
	}
	code, _ := v[0].AsInt64()
	value, _ := v[1].AsInt64()
	switch code {
	case 0:
		changed, _ := v[2].AsInt64()
		counts, _ := v[3].ToString()
		return Reacted{Counts: []byte(counts), Version: value, Changed: changed == 1}, changed != 1, nil
	case 2, 7:
		return Reacted{}, true, ErrNotFound
	case 3:
		return Reacted{}, true, ErrBacklogFull
	case 4:
		return Reacted{}, true, &RateLimitedError{RetryAfter: time.Duration(value) * time.Millisecond}
	case 5:
		return Reacted{}, true, ErrLookup
	case 6:
		return Reacted{}, true, ErrNotParticipant
	case 8:
		return Reacted{}, true, ErrTooManyReactions
	}
	return Reacted{}, false, fmt.Errorf("react: unknown answer %d", code)
}

// React applies one toggle atomically on its message's stream slot (react.lua): the checks
// (deleted, place, participant, distinct emoji, backlog cap), the user's rate limit, the
// reactions' version and the entry. Where the plan puts the rate limit apart the token is
// taken before and given back when the toggle writes nothing. It returns ErrNotFound,
// ErrLookup (load the message: x.Loaded), ErrNotParticipant, ErrTooManyReactions, a
// *RateLimitedError, ErrBacklogFull, or ErrUnavailable / ErrFull.
func (s *Store) React(ctx context.Context, x React) (Reacted, error) {
	p, ok := s.reactPlan(x)
	if !ok {
		return Reacted{}, ErrNotFound
	}
	ctx, cancel, token, err := s.withToken(ctx, &p)
	defer cancel()
	if err != nil {
		return Reacted{}, err
	}
	c := reactCall(s.cfg, &p, x)
	out, refused, err := reactResult(lua.React.Exec(ctx, s.c, c.Keys, c.Args).ToArray())
	if refused {
		token.giveBack(ctx, s)
	}
	return out, err
}

// reactPlan is the plan of x's keys: its message's route, and the reacting user's keys (their
// rate limit, and the timeline the message is looked for in: the channel's, or the user's own
// private one); false when no message of x's place can have its id.
func (s *Store) reactPlan(x React) (keyspace.Plan, bool) {
	r, ok := s.layout.RouteOf(x.Kind, x.ChannelID, x.CacheID)
	if !ok {
		return keyspace.Plan{}, false
	}
	who := message.Message{OwnerID: x.UserID, ChannelID: x.ChannelID}
	if x.Kind == message.Private {
		who.RecipientID = x.UserID
	}
	return s.layout.Plan(r, &who, ""), true
}

// ReactOutcome is one toggle's outcome in a batch.
type ReactOutcome struct {
	Reacted
	Err error
}

// ReactMany applies toggles in order, each exactly as React would: in one react_many.lua call
// when they all share one stream and its slot keeps their users' rate limits (the single
// layout), else one by one.
func (s *Store) ReactMany(ctx context.Context, xs []React) []ReactOutcome {
	out := make([]ReactOutcome, len(xs))
	var keys, args []string
	var at []int
	stream := ""
	for i, x := range xs {
		p, ok := s.reactPlan(x)
		if !ok {
			out[i].Err = ErrNotFound
			continue
		}
		if p.RateApart || x.Loaded != nil || (stream != "" && p.Stream != stream) {
			for i, x := range xs {
				out[i].Reacted, out[i].Err = s.React(ctx, x)
			}
			return out
		}
		stream = p.Stream
		c := reactCall(s.cfg, &p, x)
		keys, args = append(keys, c.Keys...), append(args, c.Args...)
		at = append(at, i)
	}
	if len(at) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout(1))
	defer cancel()
	v, err := lua.ReactMany.Exec(ctx, s.c, keys, args).ToArray()
	if err == nil && len(v) != 4*len(at) {
		err = fmt.Errorf("react: %d values in the answer to %d toggles", len(v), len(at))
	}
	for j, i := range at {
		if err != nil {
			_, _, out[i].Err = reactResult(nil, err)
			continue
		}
		out[i].Reacted, _, out[i].Err = reactResult(v[4*j:4*j+4], nil)
	}
	return out
}
