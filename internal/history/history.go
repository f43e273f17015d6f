// Package history reads chat history without holes from a write-behind pipeline: the rings and
// flush streams in Valkey, and the tables in PostgreSQL, merged by cache id. It joins package
// streams (Valkey) and package pg (PostgreSQL), which know nothing of each other.
//
// The rule (docs/readpath.md): read Valkey first — the pending deletions, and each flush stream's
// messages in the page's range — then PostgreSQL, and merge. Every accepted message is in its
// flush stream until it was acked, and acked only once its row committed, so a message missing
// from the stream when Valkey was read was committed before PostgreSQL is read: the two reads
// overlap (duplicates, merged) and never leave a hole, however far behind the workers are or
// whatever order they commit in. The other order could lose a row committed and trimmed between
// the reads. A deletion is pending from the moment ingest takes it until its entry is trimmed
// (after PostgreSQL applied it), so a deleted message is hidden whichever read finds it.
package history

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valkey-io/valkey-go"
	"golang.org/x/sync/singleflight"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// Errors of Page, for the caller to answer differently.
var (
	// ErrNoDatabase: no PostgreSQL was configured; history cannot be read.
	ErrNoDatabase = errors.New("history needs DATABASE_URL")
	// ErrDatabase: PostgreSQL did not answer; retry later.
	ErrDatabase = errors.New("postgres unavailable")
)

// Config configures a Reader.
type Config struct {
	// Valkey is the client of the layout's keys. Required.
	Valkey valkey.Client
	// Layout gives the shards to read. Required.
	Layout keyspace.Layout
	// DB reads PostgreSQL; nil makes Page fail with ErrNoDatabase.
	DB *pg.History
	// Timeout bounds one page's reads. Default 5s.
	Timeout time.Duration
	// Registerer takes the metrics. Default: a throwaway registry.
	Registerer prometheus.Registerer
	// Logger logs. Default: discard.
	Logger *slog.Logger
	// NowFunc is the clock of the watermark's lag. Default time.Now.
	NowFunc func() time.Time
	// DefaultChannel is the channel of public messages that name none (written before
	// channels).
	DefaultChannel string
	// ReactionsTTL is how long a message's hot reactions live after its last one (RING_IDLE_TTL;
	// 0: forever). When they expire, a message read from a ring or a stream without them may
	// have counts in PostgreSQL only.
	ReactionsTTL time.Duration
}

// Reader reads history pages.
type Reader struct {
	cfg     Config
	flights singleflight.Group
	m       metrics
	cold    coldCache
}

// New returns a Reader.
func New(cfg Config) (*Reader, error) {
	if cfg.Valkey == nil || cfg.Layout == nil {
		return nil, errors.New("history: Valkey and Layout are required")
	}
	cfg.DefaultChannel = cmp.Or(cfg.DefaultChannel, message.DefaultChannel)
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.NowFunc == nil {
		cfg.NowFunc = time.Now
	}
	r := &Reader{cfg: cfg, cold: coldCache{ttl: min(cfg.ReactionsTTL/2, time.Hour), max: 200_000}}
	if err := r.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	return r, nil
}

// Available reports whether a database is configured.
func (r *Reader) Available() bool { return r.cfg.DB != nil }

// Query asks for one page.
type Query struct {
	Timeline message.Timeline
	// Before pages below Cursor (newest first; Cursor 0: the newest page); else above it
	// (oldest first; Cursor 0: from the oldest).
	Before bool
	Cursor int64
	// Limit is the page size, at least 1.
	Limit int
}

// Page is one page of history, oldest first.
type Page struct {
	// Messages are ring entries, {"cache_id":N,"data":{...}}, the same bytes whatever source
	// a message came from.
	Messages [][]byte
	// HasMore says whether more messages lie in the paging direction.
	HasMore bool
	// Source is where the messages came from: ring, backlog, postgres, mixed (or empty).
	Source string
}

// Page reads a page. Identical pages asked for at once are read once and shared.
func (r *Reader) Page(ctx context.Context, q Query) (Page, error) {
	if r.cfg.DB == nil {
		return Page{}, ErrNoDatabase
	}
	// Every field of the query, strings quoted: no two queries share a key, and a field added
	// to Query is part of it without a change here.
	key := fmt.Sprintf("%#v", q)
	v, err, shared := r.flights.Do(key, func() (any, error) {
		// Detached from the first caller: the others wait on the same read.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Timeout)
		defer cancel()
		return r.read(fctx, q)
	})
	if shared {
		r.m.coalesced.Inc()
	}
	if err != nil {
		return Page{}, err
	}
	return v.(Page), nil
}

// item is a message found by a read, keyed by its cache id.
type item struct {
	id     int64
	json   []byte
	stream bool // read from a flush stream (else PostgreSQL or a ring)
}

func (r *Reader) read(ctx context.Context, q Query) (Page, error) {
	shards := r.cfg.Layout.ShardsOf(q.Timeline)
	if q.Timeline.Kind == message.Public {
		if p, ok, err := r.fromRings(ctx, q, shards); err != nil || ok {
			return p, err
		}
	}
	pending, fromStream, err := r.fromStreams(ctx, q, shards)
	if err != nil {
		return Page{}, err
	}
	rows, err := r.cfg.DB.Page(ctx, pg.PageQuery{Timeline: q.Timeline, Before: q.Before, Cursor: q.Cursor, Limit: q.Limit + 1, Exclude: pending})
	if err != nil {
		return Page{}, fmt.Errorf("%w: %v", ErrDatabase, err)
	}
	seen := make(map[int64]bool, len(fromStream)+len(rows))
	all := make([]item, 0, len(fromStream)+len(rows))
	for _, it := range fromStream {
		if !seen[it.id] {
			seen[it.id] = true
			all = append(all, it)
		}
	}
	for i := range rows {
		if !seen[rows[i].CacheID] {
			seen[rows[i].CacheID] = true
			all = append(all, item{id: rows[i].CacheID, json: rows[i].JSON()})
		}
	}
	p, kept := page(all, q)
	// Which source served the page's messages: a stream entry wins the tie (it was read first).
	nStream := 0
	for _, it := range kept {
		if it.stream {
			nStream++
		}
	}
	switch {
	case len(p.Messages) == 0:
		p.Source = "empty"
	case nStream == len(p.Messages):
		p.Source = "backlog"
	case nStream == 0:
		p.Source = "postgres"
	default:
		p.Source = "mixed"
	}
	r.m.pages.WithLabelValues(q.Timeline.Kind.String(), p.Source).Inc()
	return p, nil
}

// page sorts items in the paging direction, keeps Limit of them, and returns them oldest first,
// with the items kept.
func page(all []item, q Query) (Page, []item) {
	slices.SortFunc(all, func(a, b item) int {
		if q.Before {
			return cmp.Compare(b.id, a.id)
		}
		return cmp.Compare(a.id, b.id)
	})
	p := Page{HasMore: len(all) > q.Limit}
	all = all[:min(len(all), q.Limit)]
	if q.Before {
		slices.Reverse(all)
	}
	p.Messages = make([][]byte, len(all))
	for i, it := range all {
		p.Messages[i] = it.json
	}
	return p, all
}

// fromRings answers a public page from the rings alone when they hold it whole. Each ring (or
// shard of it) is written in the script that takes the id and cleared by the one that deletes,
// so it holds every undeleted message from its oldest entry on: the rings together hold every
// message from the highest of their oldest ids on (C). A page that lies above C, with one
// message more than the page to tell has_more, needs nothing else.
func (r *Reader) fromRings(ctx context.Context, q Query, shards []keyspace.Shard) (Page, bool, error) {
	cmds := make(valkey.Commands, 0, 2*len(shards))
	for _, s := range shards {
		if s.Ring == "" {
			return Page{}, false, nil
		}
		cmds = append(cmds, r.cfg.Valkey.B().Lrange().Key(s.Ring).Start(0).Stop(-1).Build(),
			r.cfg.Valkey.B().Zrange().Key(s.PendingDeletes).Min("0").Max("-1").Build())
	}
	res := r.cfg.Valkey.DoMulti(ctx, cmds...)
	var all []item
	var complete int64 // C
	pending := map[int64]bool{}
	for i := 0; i < len(res); i += 2 {
		entries, err := res[i].AsStrSlice()
		if err != nil {
			return Page{}, false, unavailable(err)
		}
		ids, err := res[i+1].AsStrSlice()
		if err != nil {
			return Page{}, false, unavailable(err)
		}
		for _, s := range ids {
			if id, err := strconv.ParseInt(s, 10, 64); err == nil {
				pending[id] = true
			}
		}
		oldest := int64(-1)
		for _, e := range entries {
			rec, ok := r.decodeRingEntry(q.Timeline.Kind, e)
			if !ok {
				continue
			}
			if oldest < 0 || rec.CacheID < oldest {
				oldest = rec.CacheID
			}
			all = append(all, item{id: rec.CacheID, json: rec.JSON()})
		}
		if oldest < 0 {
			return Page{}, false, nil // an empty shard says nothing of what came before
		}
		complete = max(complete, oldest)
	}
	var in []item
	for _, it := range all {
		if it.id < complete || pending[it.id] {
			continue
		}
		if (q.Before && (q.Cursor == 0 || it.id < q.Cursor)) || (!q.Before && it.id > q.Cursor) {
			in = append(in, it)
		}
	}
	switch {
	case q.Before && len(in) <= q.Limit:
		return Page{}, false, nil // the page, or has_more, reaches below C
	case !q.Before && q.Cursor < complete:
		return Page{}, false, nil // messages between the cursor and C are not in the rings
	}
	p, _ := page(in, q)
	p.Source = "ring"
	if len(p.Messages) == 0 {
		p.Source = "empty"
	}
	r.m.pages.WithLabelValues(q.Timeline.Kind.String(), p.Source).Inc()
	return p, true, nil
}

// fromStreams reads every shard's flush stream for the page: at most Limit+1 of the timeline's
// messages a shard, named by its backlog index (so a quiet channel's page reads its own few
// entries, not everyone's backlog), and the pending deletions, which it applies. A stream that
// still holds entries from before its indexes is scanned instead (chunk by chunk, filtered by
// timeline). It returns the pending deletions for PostgreSQL too.
func (r *Reader) fromStreams(ctx context.Context, q Query, shards []keyspace.Shard) ([]int64, []item, error) {
	chunk := q.Limit + 1
	if q.Timeline.Kind == message.Private || len(shards) == 1 {
		chunk = 1000 // a scan: the timeline's messages are a few of the stream's
	}
	type state struct {
		resume   string
		found    []message.Record
		done     bool
		scan     bool  // the stream holds entries from before its indexes: scan it
		ixCursor int64 // where the next index read goes on (0: at the query's cursor)
	}
	st := make([]state, len(shards))
	pendingSet := map[int64]bool{}
	var pending []int64
	first := true
	var lag time.Duration
	for {
		var qs []streams.BacklogQuery
		var idx []int
		for i, s := range shards {
			if st[i].done {
				continue
			}
			bq := streams.BacklogQuery{Stream: s.Stream, PendingDeletes: s.PendingDeletes, Before: q.Before,
				Cursor: q.Cursor, Resume: st[i].resume, Max: chunk, WithPending: first}
			if !st[i].scan {
				bq.Index, bq.IndexedSince, bq.Max = keyspace.BacklogIndex(s.Stream, q.Timeline), keyspace.IndexedSince(s.Stream), q.Limit+1
				if st[i].ixCursor != 0 {
					bq.Cursor = st[i].ixCursor
				}
			}
			qs = append(qs, bq)
			idx = append(idx, i)
		}
		if len(qs) == 0 {
			break
		}
		pages, err := streams.ReadBacklogs(ctx, r.cfg.Valkey, qs)
		if err != nil {
			return nil, nil, unavailable(err)
		}
		for j, bp := range pages {
			s := &st[idx[j]]
			if first {
				for _, id := range bp.Pending {
					if !pendingSet[id] {
						pendingSet[id] = true
						pending = append(pending, id)
					}
				}
				if t, ok := streams.IDTime(bp.FirstID); ok {
					lag = max(lag, r.cfg.NowFunc().Sub(t))
				}
			}
			for _, e := range bp.Entries {
				rec, err := r.decodeBacklog(q.Timeline.Kind, e)
				if err != nil || pendingSet[rec.CacheID] {
					continue // undecodable entries are dead-lettered, never persisted
				}
				if !q.Timeline.Contains(&rec) {
					continue
				}
				s.found = append(s.found, rec)
			}
			switch {
			case bp.Unindexed:
				s.scan = true // scanned from the next round on
			case qs[j].Index != "":
				// Some of what the index named may be deleted: read on until Limit+1 are found
				// or the index has no more.
				s.done = len(bp.Entries) < qs[j].Max || len(s.found) > q.Limit
				if n := len(bp.Entries); n > 0 {
					s.ixCursor = bp.Entries[n-1].CacheID
				}
			default:
				s.resume = bp.Next
				s.done = bp.Next == "" || len(s.found) > q.Limit
			}
		}
		first = false
	}
	r.m.watermarkLag.WithLabelValues(q.Timeline.Kind.String()).Set(lag.Seconds())
	var out []item
	for _, s := range st {
		for i := range s.found {
			out = append(out, item{id: s.found[i].CacheID, json: s.found[i].JSON(), stream: true})
		}
	}
	return pending, out, nil
}

// Participants returns the owner and recipient of private message id, from its flush stream
// while it waits there, else from PostgreSQL; "" when neither knows it (no database, or not
// reachable).
func (r *Reader) Participants(ctx context.Context, id int64) (owner, recipient string) {
	m, _, err := r.Whereabouts(ctx, message.Private, id)
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "reading a private message's users failed; the workers clear its rings", "id", id, "err", err)
	}
	return m.OwnerID, m.RecipientID
}

// Whereabouts returns the owner, recipient and channel of message id of kind, from its flush
// stream while it waits there, else from PostgreSQL. found is false when neither holds it; err
// says when PostgreSQL could not be asked (ErrNoDatabase, ErrDatabase).
func (r *Reader) Whereabouts(ctx context.Context, kind message.Kind, id int64) (m message.Message, found bool, err error) {
	rec, found, err := r.locate(ctx, kind, id)
	return rec.Message, found, err
}

// locate finds message id of kind by a scan of its flush stream around the id, else in
// PostgreSQL (its create: an edit waiting in the stream is not looked for).
func (r *Reader) locate(ctx context.Context, kind message.Kind, id int64) (rec message.Record, found bool, err error) {
	s, ok := r.cfg.Layout.RouteOf(kind, "", id)
	if !ok {
		return rec, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	// The scan starts a millisecond before the id's entry: a few entries cover it.
	pages, err := streams.ReadBacklogs(ctx, r.cfg.Valkey, []streams.BacklogQuery{{Stream: s.Stream, PendingDeletes: s.PendingDeletes, Cursor: id - 1, Max: 256}})
	if err == nil {
		for _, e := range pages[0].Entries {
			if e.CacheID != id {
				continue
			}
			if rec, err := r.decodeBacklog(kind, e); err == nil {
				return rec, true, nil
			}
		}
	}
	if r.cfg.DB == nil {
		return rec, false, ErrNoDatabase
	}
	rec, found, err = r.cfg.DB.One(ctx, kind, id)
	if err != nil {
		return rec, false, fmt.Errorf("%w: %v", ErrDatabase, err)
	}
	return rec, found, nil
}

// Find returns message id as it stands now — its latest version — looked up in timeline tl
// (its channel, or one of its users): in the timeline's backlog index while its create or an
// edit waits in the flush stream, else in PostgreSQL. deleted is true when its deletion is
// pending (then found is false). err says when PostgreSQL could not be asked (ErrNoDatabase,
// ErrDatabase) or Valkey did not answer (store.ErrUnavailable).
func (r *Reader) Find(ctx context.Context, tl message.Timeline, id int64) (rec message.Record, found, deleted bool, err error) {
	s, ok := r.cfg.Layout.RouteOf(tl.Kind, tl.Channel, id)
	if !ok {
		return rec, false, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	q := streams.BacklogQuery{Stream: s.Stream, PendingDeletes: s.PendingDeletes, Before: true, Cursor: id + 1, Max: 1,
		WithPending: true, Index: keyspace.BacklogIndex(s.Stream, tl), IndexedSince: keyspace.IndexedSince(s.Stream)}
	pages, err := streams.ReadBacklogs(ctx, r.cfg.Valkey, []streams.BacklogQuery{q})
	if err != nil {
		return rec, false, false, unavailable(err)
	}
	if slices.Contains(pages[0].Pending, id) {
		return rec, false, true, nil
	}
	if pages[0].Unindexed { // entries from before the indexes: the scan by id finds the create
		rec, found, err = r.locate(ctx, tl.Kind, id)
		return rec, found, false, err
	}
	for _, e := range pages[0].Entries {
		if e.CacheID != id {
			continue
		}
		if rec, err := r.decodeBacklog(tl.Kind, e); err == nil {
			return rec, true, false, nil
		}
	}
	if r.cfg.DB == nil {
		return rec, false, false, ErrNoDatabase
	}
	rec, found, err = r.cfg.DB.One(ctx, tl.Kind, id)
	if err != nil {
		return rec, false, false, fmt.Errorf("%w: %v", ErrDatabase, err)
	}
	return rec, found, false, nil
}

// decodeBacklog decodes a message entry that backlog.lua returned from a stream of kind (it
// returns no deletions, so the kind is the stream's).
func (r *Reader) decodeBacklog(kind message.Kind, e streams.BacklogEntry) (message.Record, error) {
	return message.DecodeEntry(kind.String(), r.cfg.DefaultChannel, e.StreamID, e.Fields)
}

// decodeRingEntry decodes a ring entry of kind; false for one that is not a valid message.
func (r *Reader) decodeRingEntry(kind message.Kind, e string) (message.Record, bool) {
	id, ok := headID([]byte(e))
	if !ok {
		return message.Record{}, false
	}
	rec, err := message.DecodeRingEntry(kind.String(), r.cfg.DefaultChannel, id, e)
	return rec, err == nil
}

// headID reads the cache_id of a ring entry.
func headID(b []byte) (int64, bool) {
	var head struct {
		CacheID *int64 `json:"cache_id"`
	}
	if json.Unmarshal(b, &head) != nil || head.CacheID == nil {
		return 0, false
	}
	return *head.CacheID, true
}

// unavailable classifies a Valkey failure of a read: always worth a retry.
func unavailable(err error) error {
	return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
}
