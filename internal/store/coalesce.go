package store

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/chatpipe/chatpipe/internal/message"
)

// Coalesce returns s with an Enqueue (and a React) that sends the single messages (toggles)
// arriving while inFlight calls are under way together, in the next call (group commit): a
// message that finds
// a call free goes at once, alone; under load the messages that queued meanwhile go as
// one enqueue.lua batch, which judges each on its own and in order — the rate limit, a known
// client_msg_id, the backlog cap — exactly as sent one by one (TestBatchMatchesModel), and, with
// a durability level, waits once for them all. A script call costs Valkey 15-20 µs however few
// messages it carries and about 3 µs more a message: single messages at 64 clients, one call
// each, were measured spending twice a bare reference's Valkey CPU. inFlight <= 0: s as it is.
//
// No goroutine of its own: the request that finds a call free sends it, and when it is done
// hands the next batch, if any queued, to that batch's first request.
func Coalesce(s *Store, inFlight int) *Coalesced {
	c := &Coalesced{Store: s, max: inFlight}
	c.enq = newBatcher(inFlight, maxCoalesced, func(ctx context.Context, q int, msgs []Message) []Outcome {
		if len(msgs) == 1 {
			r, err := s.Enqueue(ctx, msgs[0])
			return []Outcome{{Result: r, Err: err}}
		}
		return s.EnqueueMany(ctx, message.Kind(q), msgs)
	})
	// Reactions likewise: under load the toggles that queued meanwhile go as one
	// react_many.lua call, each judged as alone, in order.
	c.rx = newBatcher(inFlight, maxCoalescedReactions, func(ctx context.Context, _ int, xs []React) []ReactOutcome {
		if len(xs) == 1 {
			r, err := s.React(ctx, xs[0])
			return []ReactOutcome{{Reacted: r, Err: err}}
		}
		return s.ReactMany(ctx, xs)
	})
	return c
}

// maxCoalesced bounds one coalesced call: as many messages as one enqueue.lua run takes.
const maxCoalesced = maxScriptBatch

// maxCoalescedReactions bounds one coalesced call of toggles (27 arguments each).
const maxCoalescedReactions = 100

// Coalesced is a Store whose single messages and reactions are sent together under load
// (Coalesce).
type Coalesced struct {
	*Store
	max int
	enq *batcher[Message, Outcome]
	rx  *batcher[React, ReactOutcome]
}

// Enqueue accepts one message, in a call of its own or with the messages queued meanwhile.
func (c *Coalesced) Enqueue(ctx context.Context, m Message) (Result, error) {
	if c.max <= 0 {
		return c.Store.Enqueue(ctx, m)
	}
	o, sent := c.enq.do(ctx, int(m.Kind()), m)
	if !sent {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	return o.Result, o.Err
}

// React applies one toggle, in a call of its own or with the toggles queued meanwhile; a
// toggle whose keys are not all in its stream's slot (the rate limit apart), or that carries
// what ingest loaded, goes alone.
func (c *Coalesced) React(ctx context.Context, x React) (Reacted, error) {
	if p, ok := c.reactPlan(x); c.max <= 0 || !ok || p.RateApart || x.Loaded != nil {
		return c.Store.React(ctx, x)
	}
	o, sent := c.rx.do(ctx, int(x.Kind), x)
	if !sent {
		return Reacted{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	return o.Reacted, o.Err
}

// batcher sends the calls that arrive while inFlight calls are under way together, in the next
// call (group commit), a queue each (a kind): a call that finds a call free goes at once,
// alone. No goroutine of its own: the request that finds a call free sends it, and when it is
// done hands the next batch, if any queued, to that batch's first request.
type batcher[T, O any] struct {
	max, most int
	send      func(ctx context.Context, q int, items []T) []O

	mu       sync.Mutex
	queued   [kindCount][]*waiter[T, O]
	inFlight int
	next     int // the queue looked at first when handing on, in turns
}

func newBatcher[T, O any](inFlight, most int, send func(ctx context.Context, q int, items []T) []O) *batcher[T, O] {
	return &batcher[T, O]{max: inFlight, most: most, send: send}
}

// waiter is one call waiting for its outcome.
type waiter[T, O any] struct {
	in  T
	out O
	// wake gets a token when out is set, or when batch is this waiter's to send.
	wake  chan struct{}
	batch []*waiter[T, O]
	// taken is set (under mu) once the waiter left the queue for a batch.
	taken bool
}

// do sends in with queue q's and returns its outcome; false when ctx ended before it was sent.
func (b *batcher[T, O]) do(ctx context.Context, q int, in T) (O, bool) {
	w := &waiter[T, O]{in: in, wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.queued[q] = append(b.queued[q], w)
	if b.inFlight < b.max {
		b.inFlight++
		w.batch = b.take(q)
		b.mu.Unlock()
		b.run(ctx, q, w)
		return w.out, true
	}
	b.mu.Unlock()
	select {
	case <-w.wake:
	case <-ctx.Done():
		b.mu.Lock()
		if !w.taken { // never sent: leave the queue
			i := slices.Index(b.queued[q], w) // there: a waiter not taken is in its queue
			b.queued[q] = slices.Delete(b.queued[q], i, i+1)
			b.mu.Unlock()
			var none O
			return none, false
		}
		b.mu.Unlock()
		// Its batch is under way (bounded by the call's timeout), or is this waiter's to send:
		// either way it must go on.
		<-w.wake
	}
	if w.batch != nil {
		b.run(ctx, q, w)
	}
	return w.out, true
}

// take removes up to most waiters of queue q; the caller holds mu.
func (b *batcher[T, O]) take(q int) []*waiter[T, O] {
	queue := b.queued[q]
	n := min(len(queue), b.most)
	batch := make([]*waiter[T, O], n)
	copy(batch, queue)
	for _, w := range batch {
		w.taken = true
	}
	b.queued[q] = append(queue[:0], queue[n:]...)
	return batch
}

// run sends from's batch (of queue q), sets every outcome, hands the next batch on, and wakes
// the batch's other waiters. The call is detached from the sender's context: the others' go
// with it, whatever becomes of the sender's request.
func (b *batcher[T, O]) run(ctx context.Context, q int, from *waiter[T, O]) {
	batch := from.batch
	from.batch = nil
	items := make([]T, len(batch))
	for i, w := range batch {
		items[i] = w.in
	}
	for i, o := range b.send(context.WithoutCancel(ctx), q, items) {
		batch[i].out = o
	}
	b.mu.Lock()
	var next *waiter[T, O]
	for j := range kindCount {
		qq := (b.next + j) % kindCount
		if len(b.queued[qq]) > 0 {
			nb := b.take(qq)
			next = nb[0]
			next.batch = nb
			b.next = qq + 1
			break
		}
	}
	if next == nil {
		b.inFlight--
	}
	b.mu.Unlock()
	for _, w := range batch {
		if w != from {
			w.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}
