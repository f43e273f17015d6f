package store

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/chatpipe/chatpipe/internal/message"
)

// Coalesce returns s with an Enqueue that sends the single messages arriving while
// inFlight calls are under way together, in the next call (group commit): a message that finds
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
	return &Coalesced{Store: s, max: inFlight}
}

// maxCoalesced bounds one coalesced call: as many messages as one enqueue.lua run takes.
const maxCoalesced = maxScriptBatch

// Coalesced is a Store whose single messages are sent together under load (Coalesce).
type Coalesced struct {
	*Store
	max int

	mu       sync.Mutex
	queued   [kindCount][]*waiter
	inFlight int
	next     int // the kind looked at first when handing on, in turns
}

// waiter is one Enqueue call waiting for its message's outcome.
type waiter struct {
	m   Message
	out Outcome
	// wake gets a token when out is set, or when batch is this waiter's to send.
	wake  chan struct{}
	batch []*waiter
	// taken is set (under mu) once the waiter left the queue for a batch.
	taken bool
}

// Enqueue accepts one message, in a call of its own or with the messages queued meanwhile.
func (c *Coalesced) Enqueue(ctx context.Context, m Message) (Result, error) {
	if c.max <= 0 {
		return c.Store.Enqueue(ctx, m)
	}
	k := m.Kind()
	w := &waiter{m: m, wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.queued[k] = append(c.queued[k], w)
	if c.inFlight < c.max {
		c.inFlight++
		w.batch = c.take(k)
		c.mu.Unlock()
		c.send(ctx, k, w)
		return w.out.Result, w.out.Err
	}
	c.mu.Unlock()
	select {
	case <-w.wake:
	case <-ctx.Done():
		c.mu.Lock()
		if !w.taken { // never sent: leave the queue
			i := slices.Index(c.queued[k], w) // there: a waiter not taken is in its queue
			c.queued[k] = slices.Delete(c.queued[k], i, i+1)
			c.mu.Unlock()
			return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
		}
		c.mu.Unlock()
		// Its batch is under way (bounded by the call's timeout), or is this waiter's to send:
		// either way it must go on.
		<-w.wake
	}
	if w.batch != nil {
		c.send(ctx, k, w)
	}
	return w.out.Result, w.out.Err
}

// take removes up to maxCoalesced waiters of kind k from the queue; the caller holds mu.
func (c *Coalesced) take(k message.Kind) []*waiter {
	q := c.queued[k]
	n := min(len(q), maxCoalesced)
	batch := make([]*waiter, n)
	copy(batch, q)
	for _, w := range batch {
		w.taken = true
	}
	c.queued[k] = append(q[:0], q[n:]...)
	return batch
}

// send sends from's batch (of kind k), sets every outcome, hands the next batch on, and wakes
// the batch's other waiters. The call is detached from the sender's context: the others'
// messages go with it, whatever becomes of the sender's request.
func (c *Coalesced) send(ctx context.Context, k message.Kind, from *waiter) {
	batch := from.batch
	from.batch = nil
	ctx = context.WithoutCancel(ctx)
	if len(batch) == 1 {
		r, err := c.Store.Enqueue(ctx, batch[0].m)
		batch[0].out = Outcome{Result: r, Err: err}
	} else {
		msgs := make([]Message, len(batch))
		for i, w := range batch {
			msgs[i] = w.m
		}
		for i, o := range c.Store.EnqueueMany(ctx, k, msgs) {
			batch[i].out = o
		}
	}
	c.mu.Lock()
	var next *waiter
	for j := range kindCount {
		kk := message.Kind((c.next + j) % kindCount)
		if len(c.queued[kk]) > 0 {
			b := c.take(kk)
			next = b[0]
			next.batch = b
			c.next = int(kk) + 1
			break
		}
	}
	if next == nil {
		c.inFlight--
	}
	c.mu.Unlock()
	for _, w := range batch {
		if w != from {
			w.wake <- struct{}{}
		}
	}
	if next != nil {
		next.wake <- struct{}{}
	}
}
