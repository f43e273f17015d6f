package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
)

// Delete deletes the message ref names: from the rings in its stream's slot that may hold it,
// and records the deletion on its flush stream and among its pending deletions (delete.lua);
// then from its users' rings that live apart. A private message's users, when ref knows them,
// name it on the deletion (the live tail routes it by them) and have it removed from their
// rings at once; else the workers remove it from them once PostgreSQL names them. It returns
// ErrNotFound for an id never issued (or not of ref's channel) and ErrBacklogFull when the
// stream is at its cap. A message no longer in any ring is still deleted: the worker removes
// its row.
func (s *Store) Delete(ctx context.Context, ref message.Ref) error {
	r, ok := s.layout.RouteOf(ref.Kind, ref.ChannelID, ref.CacheID)
	seq := s.layout.Sequence(ref.CacheID)
	if !ok || seq < 1 {
		return ErrNotFound
	}
	who := ref.Who()
	p := s.layout.Plan(r, &who, "")
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	keys := append([]string{r.Counter, r.Stream, r.PendingDeletes, keyspace.Reactions(r.Stream, ref.CacheID)}, present(p.Rings)...)
	args := []string{strconv.FormatInt(ref.CacheID, 10), strconv.FormatInt(s.cfg.BacklogCap, 10), strconv.FormatInt(seq, 10),
		ref.OwnerID, ref.RecipientID, ref.ChannelID}
	if err := deleteResult(lua.Delete.Exec(ctx, s.c, keys, args)); err != nil {
		return err
	}
	if ref.Kind != message.Private || p.Apart[0] == "" {
		return nil
	}
	return s.ForgetPrivate(ctx, []message.Record{{CacheID: ref.CacheID, Message: who}})
}

// deleteResult maps delete.lua's reply to the sentinel errors.
func deleteResult(r valkey.ValkeyResult) error {
	n, err := r.AsInt64()
	switch {
	case err != nil:
		return classify(err)
	case n == -1:
		return ErrNotFound
	case n == -2:
		return ErrBacklogFull
	}
	return nil
}

// Mirror moves up to MirrorChunk entries of kind's legacy flush list into its flush stream in
// one atomic step. It returns how many moved and how many are left in the list (none where
// the layout never was the list-based cache).
func (s *Store) Mirror(ctx context.Context, kind message.Kind) (moved, left int64, err error) {
	list, stream := s.layout.Legacy(kind)
	if list == "" {
		return 0, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	keys := []string{list, stream, keyspace.IndexedSince(stream)}
	// The list-based cache has one room: its public messages are the default channel's.
	args := []string{strconv.Itoa(s.cfg.MirrorChunk), kind.String(), strconv.FormatInt(s.cfg.BacklogCap, 10),
		keyspace.BacklogIndex(stream, message.ChannelTimeline(s.layout.DefaultChannel())), keyspace.BacklogIndex(stream, message.PrivateTimeline(""))}
	v, err := lua.Mirror.Exec(ctx, s.c, keys, args).AsIntSlice()
	if err != nil {
		return 0, 0, classify(err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("mirror: unexpected reply %v", v)
	}
	return v[0], v[1], nil
}

// MirrorAll mirrors kind's legacy list chunk by chunk until it is empty or the stream is full.
func (s *Store) MirrorAll(ctx context.Context, kind message.Kind) (int64, error) {
	var total int64
	for {
		moved, left, err := s.Mirror(ctx, kind)
		total += moved
		if err != nil || moved == 0 || left == 0 {
			return total, err
		}
	}
}
