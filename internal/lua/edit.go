package lua

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

//go:embed edit.lua
var editSrc string

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

// editCall is edit.lua's call for e on route r, with rate the rate-limit keys (settings hash,
// fixed-window counter, GCRA state; the stream thrice when the limit was taken before) and rings
// the list rings that may hold the message.
func editCall(cfg Config, r keyspace.Route, e Edit, rate [3]string, rings []string) Call {
	keys := []string{r.Counter, r.Stream, r.PendingDeletes, keyspace.Edits(r.Stream), keyspace.IndexedSince(r.Stream), rate[0], rate[1], rate[2]}
	tls := e.Message.Timelines(e.Kind)
	for _, tl := range tls {
		keys = append(keys, keyspace.BacklogIndex(r.Stream, tl))
	}
	keys = append(keys, rings...)
	ifMatch := ""
	if e.IfMatch > 0 {
		ifMatch = strconv.FormatInt(e.IfMatch, 10)
	}
	mode, data, editedAt, owner := "whole", string(e.Message.JSON()), "", ""
	if e.Found == 0 {
		mode, data, editedAt = "find", string(message.AppendJSONString(nil, e.Message.Content)), e.Message.EditedAt
		owner = string(message.AppendJSONString(nil, e.Message.OwnerID))
	}
	return Call{Keys: keys, Args: []string{
		strconv.FormatInt(e.CacheID, 10), strconv.FormatInt(cfg.BacklogCap, 10), strconv.FormatInt(e.Found, 10), ifMatch,
		data, r.Partition, strconv.Itoa(len(tls)), flag(cfg.IDs == ClockIDs),
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
		return 0, true, &store.VersionMismatchError{Current: v[1]}
	case 2:
		return 0, true, fmt.Errorf("%w: deleted", store.ErrNotFound)
	case 3:
		return 0, true, store.ErrBacklogFull
	case 4:
		return 0, true, &store.RateLimitedError{RetryAfter: time.Duration(v[1]) * time.Millisecond}
	case 5:
		return 0, true, store.ErrLookup
	case 6:
		return 0, true, store.ErrNotAuthor
	}
	return 0, false, fmt.Errorf("edit: unknown answer %d", v[0])
}

// Edit accepts an edit in one call: the author's rate limit, the checks (deleted, If-Match,
// backlog cap; with Found 0 the look-up and the author), the version, the entry, the rings and
// backlog indexes, atomically. It returns the edit's version; store.ErrNotFound for a deleted
// message, store.ErrLookup, store.ErrNotAuthor, a *store.VersionMismatchError, a *store.RateLimitedError,
// store.ErrBacklogFull, or store.ErrUnavailable / store.ErrFull.
func (s *Scripts) Edit(ctx context.Context, e Edit) (int64, error) {
	if err := e.check(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r, _ := s.keys.RouteOf(e.Kind, e.Message.ChannelID, e.CacheID)
	rings := []string{r.Ring}
	if e.Kind == message.Private {
		rings = privateRings(s.keys.PrivateRing, e.Message.OwnerID, e.Message.RecipientID)
	}
	owner := e.Message.OwnerID
	c := editCall(s.cfg, r, e, [3]string{s.keys.RateSettings(), s.keys.RateLimit(owner), s.keys.RateLimitGCRA(owner)}, rings)
	v, _, err := editResult(s.edit.Exec(ctx, s.c, c.Keys, c.Args).AsIntSlice())
	return v, err
}

// Edit accepts an edit as Scripts.Edit does, in the partitioned layout's round trips: the shared
// rate limit's settings; the author's token on their slot; the edit on the message's partition
// (the token given back when it is refused); the private rings on their users' slots, where a
// ring keeps whichever entry of a message has the higher version.
func (p *Partitioned) Edit(ctx context.Context, e Edit) (int64, error) {
	if err := e.check(); err != nil {
		return 0, err
	}
	r, ok := p.keys.RouteOf(e.Kind, e.Message.ChannelID, e.CacheID)
	if !ok {
		return 0, store.ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, 3*p.cfg.Timeout)
	defer cancel()
	rl, err := p.settings(ctx)
	if err != nil {
		return 0, err
	}
	owner := e.Message.OwnerID
	rate := p.rateCall(owner, rl, "take", 1)
	switch taken, retry, err := rateReply(p.rateLimit.Exec(ctx, p.c, rate.Keys, rate.Args)); {
	case err != nil:
		return 0, err
	case taken < 1:
		return 0, &store.RateLimitedError{RetryAfter: retry}
	}
	var rings []string
	if r.Ring != "" {
		rings = []string{r.Ring}
	}
	c := editCall(p.cfg, r, e, [3]string{r.Stream, r.Stream, r.Stream}, rings)
	version, refused, err := editResult(p.edit.Exec(ctx, p.c, c.Keys, c.Args).AsIntSlice())
	if refused {
		refund := p.rateCall(owner, rl, "refund", 1)
		_ = p.rateLimit.Exec(ctx, p.c, refund.Keys, refund.Args) // best effort: a lost refund costs quota
	}
	if err != nil || e.Kind != message.Private {
		return version, err
	}
	var adds ringAdds
	m := e.Message
	adds.add(p, m.OwnerID, m.RecipientID, e.CacheID, string(message.AppendEnvelope(nil, e.CacheID, version, m.JSON())))
	_ = adds.write(ctx, p) // best effort, as for sends: the workers' repair writes what this misses
	return version, nil
}
