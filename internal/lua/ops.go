package lua

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// Delete deletes a message of kind from rings (which may be none), records the deletion on the
// kind's flush stream and among its pending deletions. owner and recipient, when known, name a
// private message's users on the deletion (the live tail routes it by them). It returns
// store.ErrNotFound for an id never issued and store.ErrBacklogFull when the stream is at its cap. A message
// no longer in any ring is still deleted: the worker removes its row.
func (s *Scripts) Delete(ctx context.Context, kind message.Kind, cacheID int64, owner, recipient, channel string, rings ...string) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r, _ := s.keys.RouteOf(kind, channel, cacheID)
	keys := append([]string{r.Counter, r.Stream, r.PendingDeletes}, rings...)
	id := strconv.FormatInt(cacheID, 10)
	args := []string{id, strconv.FormatInt(s.cfg.BacklogCap, 10), id, owner, recipient, channel}
	return deleteResult(s.delete.Exec(ctx, s.c, keys, args))
}

// DeletePrivate deletes a private message: from the rings of owner and recipient when they are
// known (else the worker removes it from them once PostgreSQL names them), and from the flush
// stream's future.
func (s *Scripts) DeletePrivate(ctx context.Context, id int64, owner, recipient string) error {
	return s.Delete(ctx, message.Private, id, owner, recipient, "", privateRings(s.keys.PrivateRing, owner, recipient)...)
}

// privateRings are the ring keys of a private message's users: none when they are unknown, one
// for a self-DM.
func privateRings(ring func(string) string, owner, recipient string) []string {
	switch {
	case owner == "":
		return nil
	case recipient == "" || recipient == owner:
		return []string{ring(owner)}
	}
	return []string{ring(owner), ring(recipient)}
}

// ForgetPrivate removes deleted private messages (with their users) from the users' rings, in
// one pipelined round trip; the workers call it once PostgreSQL applied the deletions.
func (s *Scripts) ForgetPrivate(ctx context.Context, recs []message.Record) error {
	var calls []Call
	for _, r := range recs {
		if keys := privateRings(s.keys.PrivateRing, r.Message.OwnerID, r.Message.RecipientID); len(keys) > 0 {
			calls = append(calls, Call{Keys: keys, Args: []string{strconv.FormatInt(r.CacheID, 10)}})
		}
	}
	if len(calls) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for _, r := range s.unring.ExecMulti(ctx, s.c, calls) {
		if err := r.Error(); err != nil {
			return classify(err)
		}
	}
	return nil
}

// deleteResult maps delete.lua's reply to the sentinel errors, in both layouts.
func deleteResult(r valkey.ValkeyResult) error {
	n, err := r.AsInt64()
	switch {
	case err != nil:
		return classify(err)
	case n == -1:
		return store.ErrNotFound
	case n == -2:
		return store.ErrBacklogFull
	}
	return nil
}

// Mirror moves up to MirrorChunk entries of kind's legacy flush list into its flush stream in
// one atomic step. It returns how many moved and how many are left in the list.
func (s *Scripts) Mirror(ctx context.Context, kind message.Kind) (moved, left int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	stream := s.keys.Stream(kind)
	keys := []string{s.keys.LegacyFlushList(kind), stream, keyspace.IndexedSince(stream)}
	// The list-based cache has one room: its public messages are the default channel's.
	args := []string{strconv.Itoa(s.cfg.MirrorChunk), kind.String(), strconv.FormatInt(s.cfg.BacklogCap, 10),
		keyspace.BacklogIndex(stream, message.ChannelTimeline(s.keys.DefaultChannel())), keyspace.BacklogIndex(stream, message.PrivateTimeline(""))}
	v, err := s.mirror.Exec(ctx, s.c, keys, args).AsIntSlice()
	if err != nil {
		return 0, 0, classify(err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("mirror: unexpected reply %v", v)
	}
	return v[0], v[1], nil
}

// MirrorAll mirrors kind's legacy list chunk by chunk until it is empty or the stream is full.
func (s *Scripts) MirrorAll(ctx context.Context, kind message.Kind) (int64, error) {
	var total int64
	for {
		moved, left, err := s.Mirror(ctx, kind)
		total += moved
		if err != nil || moved == 0 || left == 0 {
			return total, err
		}
	}
}

// Recent returns up to limit of the newest messages of the timeline tl, oldest first, as
// stored (ring-entry JSON). limit < 1 means the whole ring.
func (s *Scripts) Recent(ctx context.Context, tl message.Timeline, limit int) ([]string, error) {
	return s.RecentRing(ctx, s.keys.Ring(tl), limit)
}

// RecentRing returns up to limit of the newest entries of ring, oldest first, as stored.
func (s *Scripts) RecentRing(ctx context.Context, ring string, limit int) ([]string, error) {
	return newestOfList(ctx, s.c, s.cfg.Timeout, ring, limit)
}

// newestOfList returns up to limit of the newest entries of the list ring (limit < 1: all),
// oldest first, within timeout.
func newestOfList(ctx context.Context, c valkey.Client, timeout time.Duration, ring string, limit int) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := int64(0)
	if limit > 0 {
		start = -int64(limit)
	}
	v, err := c.Do(ctx, c.B().Lrange().Key(ring).Start(start).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		return nil, classify(err)
	}
	return v, nil
}

// DeletePublic deletes a public message from the public ring and the flush stream's future.
func (s *Scripts) DeletePublic(ctx context.Context, channel string, id int64) error {
	return s.Delete(ctx, message.Public, id, "", "", channel, s.keys.ChannelRing(channel))
}

// RateLimit returns the shared rate limit, the defaults filling in what the hash lacks.
func (s *Scripts) RateLimit(ctx context.Context) (RateLimit, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return readRateLimit(ctx, s.c, s.keys.RateSettings(), s.cfg.DefaultRate)
}

// readRateLimit reads the settings hash at key, def filling in what it lacks.
func readRateLimit(ctx context.Context, c valkey.Client, key string, def RateLimit) (RateLimit, error) {
	v, err := c.Do(ctx, c.B().Hmget().Key(key).Field("limit", "window_seconds", "algorithm").Build()).ToArray()
	if err != nil {
		return RateLimit{}, classify(err)
	}
	rl := def
	if len(v) != 3 {
		return rl, fmt.Errorf("rate settings: unexpected reply of %d fields", len(v))
	}
	if n, err := v[0].AsInt64(); err == nil {
		rl.Limit = int(n)
	}
	if n, err := v[1].AsInt64(); err == nil {
		rl.WindowSeconds = int(n)
	}
	if a, err := v[2].ToString(); err == nil {
		rl.Algorithm = Algorithm(a)
	}
	if rl.Algorithm != GCRA {
		rl.Algorithm = Fixed
	}
	return rl, nil
}

// SetRateLimit stores the shared rate limit, read by every replica's next enqueue.
func (s *Scripts) SetRateLimit(ctx context.Context, rl RateLimit) error {
	if err := rl.Validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	cmd := s.c.B().Hset().Key(s.keys.RateSettings()).FieldValue().
		FieldValue("limit", strconv.Itoa(rl.Limit)).
		FieldValue("window_seconds", strconv.Itoa(rl.WindowSeconds)).
		FieldValue("algorithm", string(rl.Algorithm)).Build()
	return classify(s.c.Do(ctx, cmd).Error())
}
