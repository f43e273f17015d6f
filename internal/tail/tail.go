// Package tail is the live tail of ingest's SSE endpoints: one reader per flush stream per ingest
// replica follows the stream with XREAD (outside the consumer group, so it never holds back
// trimming) and fans every entry out to the subscribers of its kind, public or a user's private
// messages. A subscriber that falls behind is dropped rather than allowed to stall the others;
// it resumes from the cursor of the last event it got, which names its position in every
// stream of the layout, so resuming works alike with one stream or one per partition.
//
// Fan-out routes an entry by its channel (public) or its users (private) to the subscribers
// that follow them, never past the others, and queues it on each; a subscriber takes
// everything queued at once (Next), so that its connection gets the events that met in one
// write: under load a write system call per event took the CPU the publishers needed.
//
// Resume reads the streams from the cursor on, and answers ErrTooOld when an entry after it has
// been trimmed (the workers keep acked entries for FLUSH_TAIL_RETENTION): trimming removes the
// oldest entries, so comparing the ordinal of the cursor's entry with that of the stream's
// oldest tells whether anything after the cursor is gone (streams.Position.Gap).
package tail

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valkey-io/valkey-go"
	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/backoff"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// Errors of Subscribe.
var (
	// ErrTooOld: entries after the cursor were trimmed; resuming would leave a hole. Read
	// history from the last cache id instead, and subscribe without a cursor.
	ErrTooOld = errors.New("cursor too old")
	// ErrFull: the replica serves its most subscribers.
	ErrFull = errors.New("too many subscribers")
	// ErrClosed: the tail is shutting down, or not started yet.
	ErrClosed = errors.New("tail closed")
)

// Event is one event of a tail.
type Event struct {
	// ID is the cursor that resumes right after this event.
	ID string
	// Type is "message", "edit", "delete", or EventSkipped.
	Type string
	// Data is the message as history gives it, or {"cache_id":N} for a deletion.
	Data []byte
	// rec routes the event to the subscribers whose timeline contains it.
	rec *message.Record
	// unrouted: a skipped entry that names no channel or user goes to every subscriber.
	unrouted bool
}

// EventSkipped is the type of the event of an entry the tail could not read (the workers
// dead-letter it): its data is {"error":"bad_entry","stream_id":…}.
const EventSkipped = "skipped"

// Config configures the tails of one ingest replica.
type Config struct {
	// Valkey is the client. Required.
	Valkey valkey.Client
	// Layout gives the streams. Required.
	Layout keyspace.Layout
	// MaxSubscribers bounds the subscribers of both kinds together. Default 1000.
	MaxSubscribers int
	// Buffer is how many events a subscriber may lag before it is dropped. Default 1024.
	Buffer int
	// Timeout bounds each Valkey call but the blocking read. Default 5s.
	Timeout time.Duration
	// Block is how long one XREAD waits. Default 5s.
	Block time.Duration
	// WriteBudget is how many times a second the replica's subscribers may take events
	// together (each take is one write to a client) before the events to busy subscribers are
	// grouped: each takes at most every subscribers/WriteBudget. 0: no pacing; a subscriber
	// then takes whatever is queued whenever it is ready.
	WriteBudget int
	// Logger logs. Default: discard.
	Logger *slog.Logger
	// Registerer takes the metrics. Default: a throwaway registry.
	Registerer prometheus.Registerer
	// DefaultChannel is the channel of public messages and deletions that name none (written
	// before channels).
	DefaultChannel string
}

// Tails are the public and the private tail of one replica.
type Tails struct {
	cfg  Config
	hubs [2]*hub
	m    metrics
	// count is the subscribers of both kinds.
	count atomic.Int64
}

// New returns the tails; Run starts them.
func New(cfg Config) (*Tails, error) {
	if cfg.Valkey == nil || cfg.Layout == nil {
		return nil, errors.New("tail: Valkey and Layout are required")
	}
	if cfg.MaxSubscribers == 0 {
		cfg.MaxSubscribers = 1000
	}
	cfg.DefaultChannel = cmp.Or(cfg.DefaultChannel, message.DefaultChannel)
	if cfg.Buffer == 0 {
		cfg.Buffer = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Block == 0 {
		cfg.Block = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	t := &Tails{cfg: cfg}
	if err := t.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	for _, k := range message.Kinds {
		t.hubs[k] = &hub{t: t, kind: k, shards: cfg.Layout.Shards(k), ready: make(chan struct{}),
			subs: map[*Subscription]struct{}{}, routes: map[string]map[*Subscription]struct{}{}, firehose: map[*Subscription]struct{}{}}
	}
	return t, nil
}

// Run follows every stream until ctx ends, then closes every subscription.
func (t *Tails) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, h := range t.hubs {
		g.Go(func() error { return h.run(gctx) })
	}
	return g.Wait()
}

// Subscribe subscribes to the selection sel, after cursor ("" for what comes from now on).
// ErrBadCursor, ErrTooOld, ErrFull, ErrClosed, or a Valkey error wrapped in store.ErrUnavailable.
func (t *Tails) Subscribe(ctx context.Context, sel Selection, cursor string) (*Subscription, error) {
	h := t.hubs[sel.Kind]
	var from []pos
	if cursor != "" {
		var err error
		if from, err = decodeCursor(cursor, len(h.shards)); err != nil {
			return nil, err
		}
	}
	if t.count.Add(1) > int64(t.cfg.MaxSubscribers) {
		t.count.Add(-1)
		t.m.refused.Inc()
		return nil, ErrFull
	}
	s, err := h.subscribe(ctx, sel, from)
	if err != nil {
		t.release()
		return nil, err
	}
	t.m.subscribers.WithLabelValues(sel.Kind.String()).Inc()
	return s, nil
}

func (t *Tails) release() { t.count.Add(-1) }

// hub follows the streams of one kind.
type hub struct {
	t      *Tails
	kind   message.Kind
	shards []keyspace.Shard
	ready  chan struct{}

	mu     sync.Mutex
	pos    []pos
	subs   map[*Subscription]struct{} // every subscriber
	closed bool
	// routes are the subscribers by what they follow: a channel (public) or a user (private);
	// firehose those of every channel.
	routes   map[string]map[*Subscription]struct{}
	firehose map[*Subscription]struct{}
	// touched are the subscribers given events by the publish under way, to be woken once.
	touched []*Subscription
	// parked[i] is set while shard i's reader waits for a subscriber; wake is closed when the
	// first one comes (and replaced).
	parked []bool
	wake   chan struct{}
}

func (h *hub) run(ctx context.Context) error {
	defer h.closeAll()
	h.pos = make([]pos, len(h.shards))
	h.parked = make([]bool, len(h.shards))
	h.wake = make(chan struct{})
	for i := range h.shards {
		for attempt := 1; ; attempt++ {
			p, err := h.position(ctx, i)
			if err == nil {
				h.pos[i] = p
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			h.t.cfg.Logger.WarnContext(ctx, "live tail: reading the stream's position failed, retrying", "stream", h.shards[i].Stream, "err", err)
			backoff.Wait(ctx, attempt)
		}
	}
	close(h.ready)
	var wg sync.WaitGroup
	for i := range h.shards {
		wg.Go(func() { h.follow(ctx, i) })
	}
	<-ctx.Done()
	h.closeAll() // at once: the subscribers' responses end while the readers' XREADs return
	wg.Wait()
	return nil
}

// position reads where stream i stands now.
func (h *hub) position(ctx context.Context, i int) (pos, error) {
	ctx, cancel := context.WithTimeout(ctx, h.t.cfg.Timeout)
	defer cancel()
	sp, err := streams.StreamPosition(ctx, h.t.cfg.Valkey, h.shards[i].Stream)
	if err != nil {
		return pos{}, err
	}
	ms, seq, err := parseID(sp.LastID)
	if err != nil {
		return pos{}, err
	}
	return pos{ms: ms, seq: seq, ord: sp.Added}, nil
}

// follow reads stream i with XREAD from the hub's position on, and hands each batch to the
// subscribers. A failure (a restart, a failover) is retried from the same position.
func (h *hub) follow(ctx context.Context, i int) {
	stream := h.shards[i].Stream
	failures := 0
	for ctx.Err() == nil {
		h.mu.Lock()
		for len(h.subs) == 0 && !h.closed {
			// Nobody listens: stop reading, or every entry would be read and decoded to be
			// thrown away (at full load an eighth of ingest's CPU, and Valkey's reads). The
			// first subscriber reads where the stream stands now (subscribe) and wakes us.
			h.parked[i] = true
			wake := h.wake
			h.mu.Unlock()
			select {
			case <-wake:
			case <-ctx.Done():
				return
			}
			h.mu.Lock()
		}
		h.parked[i] = false
		from := h.pos[i]
		h.mu.Unlock()
		rctx, cancel := context.WithTimeout(ctx, h.t.cfg.Block+h.t.cfg.Timeout)
		es, err := streams.Follow(rctx, h.t.cfg.Valkey, stream, from.id(), 500, h.t.cfg.Block)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			h.t.m.readErrors.Inc()
			h.t.cfg.Logger.WarnContext(ctx, "live tail: reading the stream failed, resuming from the same entry", "stream", stream, "err", err)
			backoff.Wait(ctx, failures)
			h.resync(ctx, i, from)
			continue
		}
		failures = 0
		if len(es) > 0 {
			h.publish(i, es)
		}
	}
}

// resync, after a failure, checks the stream did not go back behind the hub (a promoted replica
// that missed the last entries, a server restarted without its data): then the hub follows the
// stream from where it stands now; the ordinals it counted no longer hold.
func (h *hub) resync(ctx context.Context, i int, from pos) {
	p, err := h.position(ctx, i)
	if err != nil || p.ms > from.ms || (p.ms == from.ms && p.seq >= from.seq) {
		return
	}
	h.t.cfg.Logger.WarnContext(ctx, "live tail: the stream is behind the tail (failover or data loss); following it from its end", "stream", h.shards[i].Stream, "last", p.id())
	h.mu.Lock()
	h.pos[i] = p
	h.mu.Unlock()
}

// publish advances shard i over es and queues each event on the subscribers that follow it; a
// subscriber whose queue is full is dropped. Each subscriber given events is woken once, after
// the whole read: the events of one read leave in one write.
func (h *hub) publish(i int, es []streams.Entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range es {
		ms, seq, err := parseID(e.ID)
		if err != nil {
			continue
		}
		h.pos[i] = pos{ms: ms, seq: seq, ord: h.pos[i].ord + 1}
		ev := h.toEvent(e)
		ev.ID = encodeCursor(h.pos)
		m := &ev.rec.Message
		switch {
		case ev.unrouted:
			h.queue(h.subs, ev)
			continue
		case h.kind == message.Private:
			h.queue(h.routes[m.OwnerID], ev)
			if m.RecipientID != m.OwnerID {
				h.queue(h.routes[m.RecipientID], ev)
			}
			continue
		}
		h.queue(h.routes[m.ChannelID], ev)
		h.queue(h.firehose, ev)
	}
	for _, s := range h.touched {
		s.touched = false
		s.wake()
	}
	clear(h.touched)
	h.touched = h.touched[:0]
}

// queue appends ev to the queue of each subscriber of set; the caller holds h.mu.
func (h *hub) queue(set map[*Subscription]struct{}, ev Event) {
	for s := range set {
		s.mu.Lock()
		full := len(s.queue) >= h.t.cfg.Buffer
		if !full {
			s.queue = append(s.queue, ev)
		}
		s.mu.Unlock()
		if full {
			h.drop(s)
			continue
		}
		if !s.touched {
			s.touched = true
			h.touched = append(h.touched, s)
		}
	}
}

// add registers s; the caller holds h.mu.
func (h *hub) add(s *Subscription) {
	h.subs[s] = struct{}{}
	keys := s.sel.routes()
	if keys == nil {
		h.firehose[s] = struct{}{}
	}
	for _, k := range keys {
		set := h.routes[k]
		if set == nil {
			set = map[*Subscription]struct{}{}
			h.routes[k] = set
		}
		set[s] = struct{}{}
	}
}

// remove takes s off the hub and ends it with err; false when it was not on it. The caller
// holds h.mu.
func (h *hub) remove(s *Subscription, err error) bool {
	if _, ok := h.subs[s]; !ok {
		return false
	}
	delete(h.subs, s)
	delete(h.firehose, s)
	for _, k := range s.sel.routes() {
		if set := h.routes[k]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(h.routes, k)
			}
		}
	}
	s.end(err)
	return true
}

// drop removes s, which fell behind; the caller holds h.mu.
func (h *hub) drop(s *Subscription) {
	if h.remove(s, ErrDropped) {
		h.t.m.dropped.Inc()
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.remove(s, ErrClosed)
	}
}

// subscribe registers a subscription at the hub's current position, so that every entry after
// it comes live; from, when set, is caught up to that position first (Subscription.Next).
func (h *hub) subscribe(ctx context.Context, sel Selection, from []pos) (*Subscription, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s := &Subscription{h: h, sel: sel, ready: make(chan struct{}, 1)}
	if err := h.unpark(ctx); err != nil {
		return nil, err
	}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	s.upTo = append([]pos(nil), h.pos...)
	h.add(s)
	if len(h.subs) == 1 {
		close(h.wake)
		h.wake = make(chan struct{})
	}
	h.mu.Unlock()
	if from != nil {
		s.at = from
		// Every stream's gap is checked, and the first chunk read, before the caller answers:
		// a cursor too old is refused before any event.
		err := s.checkGaps(ctx)
		if err == nil {
			err = s.catchUp(ctx)
		}
		if err != nil {
			s.unregister()
			return nil, err
		}
	}
	return s, nil
}

// unpark sets the positions of parked readers to where their streams stand, so that a
// subscriber's live events start now and not where its reader stopped (or, after a restart or
// failover that lost entries, at the stream's end, which is behind it). Only while nobody is
// subscribed: a subscriber's live events start where the reader stands when it registers.
func (h *hub) unpark(ctx context.Context) error {
	h.mu.Lock()
	var parked []int
	for i, p := range h.parked {
		if p {
			parked = append(parked, i)
		}
	}
	h.mu.Unlock()
	fresh := make([]pos, len(parked))
	for j, i := range parked {
		p, err := h.position(ctx, i)
		if err != nil {
			return unavailable(err)
		}
		fresh[j] = p
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) > 0 {
		return nil
	}
	for j, i := range parked {
		if !h.parked[i] {
			continue
		}
		if before(fresh[j], h.pos[i]) {
			h.t.cfg.Logger.WarnContext(ctx, "live tail: the stream is behind the tail (failover or data loss); following it from its end", "stream", h.shards[i].Stream, "last", fresh[j].id())
		}
		h.pos[i] = fresh[j]
	}
	return nil
}

// checkGaps fails with ErrTooOld when any stream lost an entry after the cursor.
func (s *Subscription) checkGaps(ctx context.Context) error {
	cfg := &s.h.t.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	for k := range s.at {
		if !before(s.at[k], s.upTo[k]) {
			continue
		}
		sp, err := streams.StreamPosition(ctx, cfg.Valkey, s.h.shards[k].Stream)
		if err != nil {
			return unavailable(err)
		}
		if sp.Gap(s.at[k].id(), s.at[k].ord) {
			s.h.t.m.tooOld.Inc()
			return ErrTooOld
		}
	}
	return nil
}

// Subscription is one subscriber's events.
type Subscription struct {
	h   *hub
	sel Selection
	// at is the catch-up position, nil once caught up; upTo where the live events begin.
	at      []pos
	upTo    []pos
	pending []Event
	closed  sync.Once
	// touched is set (under h.mu) while a publish has queued events for s and not woken it.
	touched bool
	// ready holds a token when the queue gained events or the subscription ended.
	ready chan struct{}
	// timer times Next's waits, for a heartbeat or for pacing: one per subscription, not one
	// per wait. took is when Next last returned events.
	timer *time.Timer
	took  time.Time

	mu sync.Mutex
	// queue are the live events not taken yet; spare is the slice Next handed out last,
	// reused as the next queue.
	queue, spare []Event
	// err is why the live events ended (ErrDropped, ErrClosed); the queue is still taken first.
	err error
}

// wants reports whether the event is for this subscriber.
func (s *Subscription) wants(ev Event) bool { return ev.unrouted || s.sel.Contains(ev.rec) }

// wake gives s its token, if it has none.
func (s *Subscription) wake() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// end ends the live events with err (the first reason stays).
func (s *Subscription) end(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.wake()
}

// maxKept bounds the capacity of a queue kept for reuse: a burst's queue of Buffer events is
// let go rather than held by each of a thousand subscribers.
const maxKept = 256

// queued tells how many events are queued, and why the live events ended (nil: they go on).
func (s *Subscription) queued() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue), s.err
}

// take returns the queued events. The slice is the caller's until the next call.
func (s *Subscription) take() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.queue
	clear(s.spare) // the events handed out last time: their data is not held
	s.queue = s.spare[:0]
	if cap(s.queue) > maxKept {
		s.queue = nil
	}
	s.spare = out
	return out
}

// arm starts s.timer for d, whether it was stopped, fired or running.
func (s *Subscription) arm(d time.Duration) <-chan time.Time {
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d) // since Go 1.23 no stale tick survives a Reset
	}
	return s.timer.C
}

// Selection is what a subscription follows: a user's private messages, some channels, or every
// channel (a backend's firehose).
type Selection struct {
	Kind message.Kind
	// User is a private selection's user.
	User string
	// Channels are a public selection's channels; nil: every channel.
	Channels map[string]bool
}

// routes are the keys the hub routes the selection's events by: its user, or its channels;
// nil for every channel.
func (s Selection) routes() []string {
	if s.Kind == message.Private {
		return []string{s.User}
	}
	if s.Channels == nil {
		return nil
	}
	keys := make([]string, 0, len(s.Channels))
	for c := range s.Channels {
		keys = append(keys, c)
	}
	return keys
}

// Follow is the selection of one timeline.
func Follow(tl message.Timeline) Selection {
	if tl.Kind == message.Private {
		return Selection{Kind: message.Private, User: tl.User}
	}
	return Selection{Kind: message.Public, Channels: map[string]bool{tl.Channel: true}}
}

// Contains reports whether the record (a message or deletion of the selection's kind, decoded
// with its channel) is one the selection follows.
func (s Selection) Contains(r *message.Record) bool {
	if s.Kind == message.Private {
		return message.PrivateTimeline(s.User).Contains(r)
	}
	return s.Channels == nil || s.Channels[r.Message.ChannelID]
}

// ErrDropped: the subscriber fell behind and was dropped; it resumes from its last event's ID.
var ErrDropped = errors.New("subscriber fell behind")

// Next returns every event ready, in order, at least one: first those between the cursor and
// the subscription's start (a chunk at a time), then the live ones queued since the last call.
// It returns none when no event came within wait (time for a heartbeat). The slice is the
// caller's until the next call. It fails with ErrDropped (after the events queued before the
// drop), ErrTooOld (entries trimmed during a long catch-up), ErrClosed, a Valkey error, or
// ctx's error.
func (s *Subscription) Next(ctx context.Context, wait time.Duration) ([]Event, error) {
	for len(s.pending) == 0 && s.at != nil {
		if err := s.catchUp(ctx); err != nil {
			return nil, err
		}
	}
	if len(s.pending) > 0 {
		evs := s.pending
		s.pending = nil
		s.counted(len(evs))
		return evs, nil
	}
	var heartbeat <-chan time.Time
	for {
		n, err := s.queued()
		if n > 0 {
			break
		}
		if err != nil {
			return nil, err
		}
		if heartbeat == nil {
			heartbeat = s.arm(wait)
			defer s.timer.Stop()
		}
		select {
		case <-s.ready: // a token may be stale (its events taken already): look again
		case <-heartbeat:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := s.pace(ctx); err != nil { // pace may take the timer over
		return nil, err
	}
	s.took = time.Now()
	evs := s.take()
	s.counted(len(evs))
	return evs, nil
}

// counted counts a take of n events.
func (s *Subscription) counted(n int) {
	if n > 0 {
		s.h.t.m.takes.Inc()
		s.h.t.m.events.Add(float64(n))
	}
}

// pace holds a busy subscriber's events back until its share of the replica's write budget
// allows the next write: subscribers / WriteBudget after its previous one. A lone event, or any
// event to a subscriber that has not written for that long, is not held at all.
func (s *Subscription) pace(ctx context.Context) error {
	budget := s.h.t.cfg.WriteBudget
	if budget <= 0 || s.took.IsZero() {
		return nil
	}
	gap := time.Duration(s.h.t.count.Load()) * time.Second / time.Duration(budget)
	wait := gap - time.Since(s.took)
	if wait <= 0 {
		return nil
	}
	select {
	case <-s.arm(wait):
		return nil
	case <-ctx.Done():
		s.timer.Stop()
		return ctx.Err()
	}
}

// catchUp reads the next chunk of the first shard not yet at upTo into s.pending, checking
// after the read that nothing after its start had been trimmed (the read was then complete).
func (s *Subscription) catchUp(ctx context.Context) error {
	for k := range s.at {
		if !before(s.at[k], s.upTo[k]) {
			continue
		}
		cfg := &s.h.t.cfg
		stream := s.h.shards[k].Stream
		rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		defer cancel()
		es, err := streams.ReadAfter(rctx, cfg.Valkey, stream, s.at[k].id(), 500)
		if err != nil {
			return unavailable(err)
		}
		sp, err := streams.StreamPosition(rctx, cfg.Valkey, stream)
		if err != nil {
			return unavailable(err)
		}
		if sp.Gap(s.at[k].id(), s.at[k].ord) {
			s.h.t.m.tooOld.Inc()
			return ErrTooOld
		}
		for _, e := range es {
			ms, seq, err := parseID(e.ID)
			if err != nil {
				continue
			}
			p := pos{ms: ms, seq: seq, ord: s.at[k].ord + 1}
			if !before(s.at[k], s.upTo[k]) || before(s.upTo[k], p) {
				break // the live events take it from here
			}
			s.at[k] = p
			ev := s.h.toEvent(e)
			if !s.wants(ev) {
				continue
			}
			ids := make([]pos, len(s.at))
			copy(ids, s.upTo[:k])
			copy(ids[k:], s.at[k:])
			ev.ID = encodeCursor(ids)
			s.pending = append(s.pending, ev)
		}
		if len(es) == 0 {
			s.at[k] = s.upTo[k] // nothing after it any more: the stream was reset
		}
		return nil
	}
	s.at = nil
	return nil
}

// before reports whether a is an earlier entry than b.
func before(a, b pos) bool { return a.ms < b.ms || (a.ms == b.ms && a.seq < b.seq) }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.closed.Do(func() {
		s.unregister()
		s.h.t.release()
		s.h.t.m.subscribers.WithLabelValues(s.h.kind.String()).Dec()
	})
}

// unregister takes s off its hub.
func (s *Subscription) unregister() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(s, ErrClosed)
}

// toEvent turns a stream entry into an event. An entry that does not decode (the workers
// dead-letter it) becomes a "skipped" event, never nothing: a subscriber learns that an entry
// of what it follows could not be read, and its cursor moves past it (skipped).
func (h *hub) toEvent(e streams.Entry) Event {
	rec, err := message.DecodeEntry(h.kind.String(), h.t.cfg.DefaultChannel, e.ID, e.Fields)
	if err != nil {
		return h.skipped(e)
	}
	ev := Event{rec: &rec, Type: rec.Op.String()}
	switch rec.Op {
	case message.OpDelete:
		ev.Data = rec.DeletionJSON()
	case message.OpPost, message.OpEdit: // an edit carries the whole new message: clients replace
		ev.Data = rec.JSON()
	case message.OpReact: // the whole counts: clients replace theirs, never increment
		ev.Data = rec.ReactionJSON()
	}
	return ev
}

// skipped is the event of an entry that does not decode: {"error":"bad_entry","stream_id":…},
// routed by whatever of its channel or users can be read from it, else to every subscriber of
// the hub (unrouted). It names no detail: the entry may belong to another timeline than a
// subscriber's; operators find it whole among the dead letters.
func (h *hub) skipped(e streams.Entry) Event {
	rec := message.Record{StreamID: e.ID}
	m := &rec.Message
	m.OwnerID, m.RecipientID, m.ChannelID = e.Fields[message.FieldOwnerID], e.Fields[message.FieldRecipientID], e.Fields[message.FieldChannelID]
	var p struct {
		Data struct {
			OwnerID     any `json:"owner_id"`
			RecipientID any `json:"recipient_id"`
			ChannelID   any `json:"channel_id"`
		} `json:"data"`
	}
	if json.Unmarshal([]byte(e.Fields[message.FieldPayload]), &p) == nil {
		m.OwnerID = cmp.Or(m.OwnerID, asString(p.Data.OwnerID))
		m.RecipientID = cmp.Or(m.RecipientID, asString(p.Data.RecipientID))
		m.ChannelID = cmp.Or(m.ChannelID, asString(p.Data.ChannelID))
	}
	ev := Event{rec: &rec, Type: EventSkipped}
	ev.Data = append(message.AppendJSONString([]byte(`{"error":"bad_entry","stream_id":`), e.ID), '}')
	if h.kind == message.Private {
		ev.unrouted = m.OwnerID == "" && m.RecipientID == ""
	} else {
		ev.unrouted = m.ChannelID == ""
	}
	return ev
}

// asString is v when it is a string, else "".
func asString(v any) string {
	s, _ := v.(string)
	return s
}

func unavailable(err error) error { return errors.Join(store.ErrUnavailable, err) }
