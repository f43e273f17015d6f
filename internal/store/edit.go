package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
)

// Edit is an edit of a message. Either ingest found the message and checked its author and
// place (Found > 0), and Message is the whole new message; or the script finds it (Found 0: a
// public message, in its channel's backlog index, where the edits of recent messages find it
// in the same round trip), and Message holds the editor (OwnerID), the channel, the new Content
// and EditedAt only.
type Edit struct {
	Kind    message.Kind
	CacheID int64
	Message message.Message
	// Found is the version ingest found the message at; 0 to have the script find it.
	Found int64
	// IfMatch is the version the editor last saw (0: no condition).
	IfMatch int64
}

// check refuses an edit the script cannot make: the script finds public messages only (a
// private one's other user, and so their index and ring, are known once it is found).
func (e Edit) check() error {
	if e.Found == 0 && e.Kind == message.Private {
		return errors.New("edit: a private message is found by ingest and edited whole")
	}
	return nil
}

// editCall is edit.lua's call for e by its plan p: the rate-limit keys (the stream thrice where
// the limit is taken apart: every key of a call is in the stream's slot), the backlog indexes
// of its timelines and the list rings that may hold it.
func editCall(cfg Config, p *keyspace.Plan, e Edit) lua.Call {
	rate := [3]string{p.Settings, p.Rate[0], p.Rate[1]}
	if p.RateApart {
		rate = [3]string{p.Stream, p.Stream, p.Stream}
	}
	keys := []string{p.Counter, p.Stream, p.PendingDeletes, keyspace.Edits(p.Stream), p.IndexedSince, rate[0], rate[1], rate[2]}
	indexes := present(p.Indexes)
	keys = append(keys, indexes...)
	keys = append(keys, present(p.Rings)...)
	ifMatch := ""
	if e.IfMatch > 0 {
		ifMatch = strconv.FormatInt(e.IfMatch, 10)
	}
	mode, data, editedAt, owner := "whole", string(e.Message.JSON()), "", ""
	if e.Found == 0 {
		mode, data, editedAt = "find", string(message.AppendJSONString(nil, e.Message.Content)), e.Message.EditedAt
		owner = string(message.AppendJSONString(nil, e.Message.OwnerID))
	}
	return lua.Call{Keys: keys, Args: []string{
		strconv.FormatInt(e.CacheID, 10), strconv.FormatInt(cfg.BacklogCap, 10), strconv.FormatInt(e.Found, 10), ifMatch,
		data, p.Partition, strconv.Itoa(len(indexes)), flag(cfg.IDs == ClockIDs),
		strconv.Itoa(cfg.DefaultRate.Limit), strconv.Itoa(cfg.DefaultRate.WindowSeconds), string(cfg.DefaultRate.Algorithm),
		mode, editedAt, owner}}
}

// editResult maps edit.lua's reply to the version or the sentinel errors, in both layouts;
// refused says whether the edit was refused before it took from the rate limit.
func editResult(v []int64, err error) (version int64, refused bool, _ error) {
	switch {
	case err != nil:
		return 0, false, classify(err)
	case len(v) != 2:
		return 0, false, fmt.Errorf("edit: %d values in the answer, want 2", len(v))
	}
	switch v[0] {
	case 0:
		return v[1], false, nil
	case 1:
		return 0, true, &VersionMismatchError{Current: v[1]}
	case 2:
		return 0, true, fmt.Errorf("%w: deleted", ErrNotFound)
	case 3:
		return 0, true, ErrBacklogFull
	case 4:
		return 0, true, &RateLimitedError{RetryAfter: time.Duration(v[1]) * time.Millisecond}
	case 5:
		return 0, true, ErrLookup
	case 6:
		return 0, true, ErrNotAuthor
	}
	return 0, false, fmt.Errorf("edit: unknown answer %d", v[0])
}

// Edit accepts an edit: the author's rate limit, the checks (deleted, If-Match, backlog cap;
// with Found 0 the look-up and the author), the version, the entry, the rings and backlog
// indexes in its stream's slot, atomically (edit.lua). Where the plan puts the rate limit apart,
// the author's token is taken before (and given back when the edit is refused); where it puts
// the private rings apart, they are written after, each keeping whichever entry of a message
// has the higher version. It returns the edit's version; ErrNotFound for a deleted message,
// ErrLookup, ErrNotAuthor, a *VersionMismatchError, a *RateLimitedError, ErrBacklogFull, or
// ErrUnavailable / ErrFull.
func (s *Store) Edit(ctx context.Context, e Edit) (int64, error) {
	if err := e.check(); err != nil {
		return 0, err
	}
	r, ok := s.layout.RouteOf(e.Kind, e.Message.ChannelID, e.CacheID)
	if !ok {
		return 0, ErrNotFound
	}
	p := s.layout.Plan(r, &e.Message, "")
	ctx, cancel, token, err := s.withToken(ctx, &p)
	defer cancel()
	if err != nil {
		return 0, err
	}
	c := editCall(s.cfg, &p, e)
	version, refused, err := editResult(lua.Edit.Exec(ctx, s.c, c.Keys, c.Args).AsIntSlice())
	if refused {
		token.giveBack(ctx, s)
	}
	if err != nil || p.Apart[0] == "" {
		return version, err
	}
	var adds ringAdds
	adds.add(p.Apart, e.CacheID, string(message.AppendEnvelope(nil, e.CacheID, version, e.Message.JSON())))
	_ = adds.write(ctx, s) // best effort, as for sends: the workers' repair writes what this misses
	return version, nil
}
