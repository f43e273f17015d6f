package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/lua"
)

// GroupConfig names one consumer of one stream's consumer group.
type GroupConfig struct {
	// Stream is the stream's key. Required.
	Stream string
	// DeadLetter is the key of the stream's dead-letter stream. Required.
	DeadLetter string
	// Group is the consumer group. Required.
	Group string
	// Consumer is this consumer's stable name. Required.
	Consumer string
	// Timeout bounds each call. Default 5s.
	Timeout time.Duration
	// Replicas, when above 0, confirms each read with a WAIT for this many replicas (see Read).
	Replicas int
	// ReplicaTimeout bounds each WAIT. Default 1s.
	ReplicaTimeout time.Duration
	// Logger logs. Default: discard.
	Logger *slog.Logger
}

// Group is one consumer's view of a stream's consumer group: the Valkey side of consuming,
// nothing of where the entries go.
type Group struct {
	c   valkey.Client
	cfg GroupConfig
	log *slog.Logger
	// unconfirmed is set when a read moved entries into this consumer's pending list that too
	// few replicas held: they are read again from the pending list once replicas catch up.
	unconfirmed atomic.Bool
}

// Entry is one stream entry as read; Fields is nil for an entry deleted from the stream while
// it was pending.
type Entry struct {
	ID     string
	Fields map[string]string
}

// ErrNotReplicated: a read's entries are not yet on enough replicas (GroupConfig.Replicas); they
// stay pending, and Unconfirmed reports it.
var ErrNotReplicated = errors.New("entries not yet on enough replicas")

// NewGroup returns the consumer cfg.Consumer of cfg.Group on cfg.Stream.
func NewGroup(c valkey.Client, cfg GroupConfig) (*Group, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.ReplicaTimeout == 0 {
		cfg.ReplicaTimeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Stream == "" || cfg.DeadLetter == "" || cfg.Group == "" || cfg.Consumer == "":
		return nil, errors.New("streams: Stream, DeadLetter, Group and Consumer are required")
	case cfg.Replicas < 0:
		return nil, errors.New("streams: Replicas must not be negative")
	}
	return &Group{c: c, cfg: cfg, log: cfg.Logger}, nil
}

// Stream is the stream's key.
func (g *Group) Stream() string { return g.cfg.Stream }

// Create creates the group at the stream's start (group.lua, which runs while Valkey is full
// too). An existing group is fine.
func (g *Group) Create(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	if err := groupScript.Exec(cctx, g.c, []string{g.cfg.Stream}, []string{g.cfg.Group}).Error(); err != nil {
		return fmt.Errorf("creating group %s on %s: %w", g.cfg.Group, g.cfg.Stream, err)
	}
	return nil
}

// Unconfirmed reports, and clears, whether a read left entries pending that too few replicas
// held: the caller reads its pending list again (Read from "0").
func (g *Group) Unconfirmed() bool { return g.unconfirmed.Swap(false) }

// Read runs XREADGROUP from id (">" for new entries, else this consumer's history). It uses a
// context detached from ctx's cancellation: a read cut short could have moved entries into
// this consumer's pending list without returning them. block bounds it instead. With Replicas
// it returns ErrNotReplicated when the entries are not on enough replicas (see confirmed).
func (g *Group) Read(ctx context.Context, id string, count int, block time.Duration) ([]Entry, error) {
	if count < 1 {
		return nil, nil // COUNT 0 would mean "everything"
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), block+g.cfg.Timeout+g.cfg.ReplicaTimeout)
	defer cancel()
	b := g.c.B().Xreadgroup().Group(g.cfg.Group, g.cfg.Consumer).Count(int64(count))
	var cmd valkey.Completed
	if block > 0 {
		cmd = b.Block(block.Milliseconds()).Streams().Key(g.cfg.Stream).Id(id).Build()
	} else {
		cmd = b.Streams().Key(g.cfg.Stream).Id(id).Build()
	}
	var touch func(valkey.ValkeyResult) []string
	if id != ">" || block > 0 {
		// WAIT waits for the connection's last write offset, which Valkey sets only for a
		// command that propagated when it ran. A read of this consumer's history may write
		// nothing; a read that blocked and was served by a later XADD leaves the offset at the
		// connection's previous write (Valkey 8.0), so the WAIT after it would pass while the
		// replicas lack the entries (TestGroupBlockedReadWaitsForReplicas). Either way: touch
		// what it returned (XCLAIM JUSTID, a write after the entries' XADDs) and wait for that.
		touch = func(r valkey.ValkeyResult) []string {
			xs, _ := r.AsXRead()
			ids := make([]string, 0, len(xs[g.cfg.Stream]))
			for _, x := range xs[g.cfg.Stream] {
				ids = append(ids, x.ID)
			}
			return ids
		}
	}
	r, err := g.confirmed(ctx, rctx, cmd, touch)
	if err != nil {
		return nil, err
	}
	res, err := r.AsXRead()
	if valkey.IsValkeyNil(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	xs := res[g.cfg.Stream]
	out := make([]Entry, len(xs))
	for i, x := range xs {
		out[i] = Entry{ID: x.ID, Fields: x.FieldValues}
	}
	return out, nil
}

// confirmed runs cmd, a read that delivers entries. With Replicas the read and a WAIT go in one
// DoMulti on a dedicated connection (the WAIT covers the read's own write to the pending list,
// which replication orders after the entries' XADDs), and while too few replicas answer the
// WAIT is repeated on that same connection, so that no re-read counts as a delivery. The
// connection is named with a random tag and the tag checked with each WAIT: a WAIT on a
// connection valkey-go opened anew would count no earlier write. When the connection changed
// (a failover) or ctx ends first, the delivered entries stay pending, marked for a re-read,
// and ErrNotReplicated is returned.
//
// touch, when set, returns the ids the read delivered: they are touched (XCLAIM JUSTID) on the
// same connection and the WAIT waits for that write, for reads that may write nothing.
func (g *Group) confirmed(ctx, rctx context.Context, cmd valkey.Completed, touch func(valkey.ValkeyResult) []string) (valkey.ValkeyResult, error) {
	if g.cfg.Replicas == 0 {
		return g.c.Do(rctx, cmd), nil
	}
	dc, release := g.c.Dedicate()
	defer release()
	tag := fmt.Sprintf("chatpipe-%s-%016x", g.cfg.Consumer, rand.Uint64())
	wait := func() valkey.Completed {
		return dc.B().Wait().Numreplicas(int64(g.cfg.Replicas)).Timeout(g.cfg.ReplicaTimeout.Milliseconds()).Build()
	}
	// The read goes first: on a cluster the dedicated connection is the one to the first
	// command's slot (CLIENT SETNAME has no key).
	res := dc.DoMulti(rctx, cmd, dc.B().ClientSetname().ConnectionName(tag).Build(), wait())
	read := res[0]
	if read.Error() != nil {
		return read, nil
	}
	if err := res[1].Error(); err != nil {
		g.unconfirmed.Store(true)
		return read, fmt.Errorf("%w: naming the connection: %w", ErrNotReplicated, err)
	}
	n, err := res[2].AsInt64()
	if touch != nil {
		if ids := touch(read); len(ids) > 0 {
			tc := dc.B().Xclaim().Key(g.cfg.Stream).Group(g.cfg.Group).Consumer(g.cfg.Consumer).MinIdleTime("0").Id(ids...).Justid().Build()
			tr := dc.DoMulti(rctx, tc, wait())
			if err = tr[0].Error(); err == nil {
				n, err = tr[1].AsInt64()
			}
		}
	}
	for since := time.Now(); err == nil && n < int64(g.cfg.Replicas); {
		if ctx.Err() != nil {
			break
		}
		if time.Since(since) > 10*time.Second {
			g.log.WarnContext(ctx, "waiting for replicas to hold the entries read", "replicas", g.cfg.Replicas, "acknowledged", n)
			since = time.Now()
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.Timeout+g.cfg.ReplicaTimeout)
		r := dc.DoMulti(wctx, dc.B().ClientGetname().Build(), wait())
		cancel()
		if name, gerr := r[0].ToString(); gerr != nil || name != tag {
			err = errors.New("the connection changed while waiting for replicas")
			break
		}
		n, err = r[1].AsInt64()
	}
	if err != nil || n < int64(g.cfg.Replicas) {
		g.unconfirmed.Store(true)
		if err == nil {
			err = fmt.Errorf("%d of %d replicas acknowledged", n, g.cfg.Replicas)
		}
		return read, fmt.Errorf("%w: %w", ErrNotReplicated, err)
	}
	return read, nil
}

// Ack acks ids.
func (g *Group) Ack(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	return g.c.Do(cctx, g.c.B().Xack().Key(g.cfg.Stream).Group(g.cfg.Group).Id(ids...).Build()).Error()
}

// Touch resets the idle time of entries this consumer holds (XCLAIM to itself with JUSTID,
// which does not count as a delivery), so that they are not reclaimed while it still works.
func (g *Group) Touch(ctx context.Context, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	cmd := g.c.B().Xclaim().Key(g.cfg.Stream).Group(g.cfg.Group).Consumer(g.cfg.Consumer).MinIdleTime("0").Id(ids...).Justid().Build()
	return g.c.Do(cctx, cmd).Error()
}

// Deliveries returns how often each entry was delivered, from this consumer's pending list.
func (g *Group) Deliveries(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	ids = slices.Clone(ids)
	slices.SortFunc(ids, CompareIDs)
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	cmd := g.c.B().Xpending().Key(g.cfg.Stream).Group(g.cfg.Group).Start(ids[0]).End(ids[len(ids)-1]).
		Count(int64(len(ids) + 5000)).Consumer(g.cfg.Consumer).Build()
	rows, err := g.c.Do(cctx, cmd).ToArray()
	if err != nil {
		return out, err
	}
	for _, row := range rows {
		f, err := row.ToArray()
		if err != nil || len(f) != 4 {
			continue
		}
		id, _ := f[0].ToString()
		n, _ := f[3].AsInt64()
		out[id] = n
	}
	return out, nil
}

// Claim claims up to count entries idle longer than minIdle from any consumer, from start
// (XAUTOCLAIM, confirmed like Read). It returns the cursor for the next call ("0-0" at the end),
// the claimed entries, and the ids that were deleted from the stream while pending (XAUTOCLAIM
// has removed them from the pending list: they are gone).
func (g *Group) Claim(ctx context.Context, start string, count int, minIdle time.Duration) (next string, es []Entry, deleted []string, err error) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout+g.cfg.ReplicaTimeout)
	defer cancel()
	cmd := g.c.B().Xautoclaim().Key(g.cfg.Stream).Group(g.cfg.Group).Consumer(g.cfg.Consumer).
		MinIdleTime(strconv.FormatInt(minIdle.Milliseconds(), 10)).Start(start).Count(int64(count)).Build()
	r, err := g.confirmed(ctx, cctx, cmd, nil) // XAUTOCLAIM writes what it claims
	if err != nil {
		return "", nil, nil, err
	}
	reply, err := r.ToArray()
	if err != nil {
		return "", nil, nil, err
	}
	return parseAutoclaim(reply)
}

func parseAutoclaim(reply []valkey.ValkeyMessage) (next string, es []Entry, deleted []string, err error) {
	if len(reply) < 2 {
		return "", nil, nil, fmt.Errorf("unexpected XAUTOCLAIM reply: %d elements", len(reply))
	}
	if next, err = reply[0].ToString(); err != nil {
		return "", nil, nil, err
	}
	xs, err := reply[1].AsXRange()
	if err != nil {
		return "", nil, nil, err
	}
	for _, x := range xs {
		es = append(es, Entry{ID: x.ID, Fields: x.FieldValues})
	}
	if len(reply) > 2 {
		if deleted, err = reply[2].AsStrSlice(); err != nil {
			return "", nil, nil, err
		}
	}
	return next, es, deleted, nil
}

// Failed is an entry to move to the dead-letter stream and why.
type Failed struct {
	Entry Entry
	// Reason is the kind of failure, one word (decode, rejected, poison, id_reused).
	Reason string
	// Error is the reason, human-readable.
	Error string
	// Deliveries is how often the entry was delivered (at least 1 is written).
	Deliveries int64
}

// MoveToDeadLetter moves entries to the dead-letter stream, each atomically with its ack, in one
// pipelined round trip, adding DeadLetterFields to the original's fields. It returns, per
// entry, whether it moved (false: no longer pending, another consumer handled it) and the error
// of those that failed and stay pending.
func (g *Group) MoveToDeadLetter(ctx context.Context, dead []Failed, failedAt time.Time) ([]bool, []error) {
	at := failedAt.UTC().Format(time.RFC3339Nano)
	calls := make([]lua.Call, len(dead))
	for i, d := range dead {
		args := []string{g.cfg.Group, d.Entry.ID}
		keys := make([]string, 0, len(d.Entry.Fields))
		for k := range d.Entry.Fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			args = append(args, k, d.Entry.Fields[k])
		}
		meta := [len(DeadLetterFields)]string{d.Reason, d.Error, d.Entry.ID, strconv.FormatInt(max(d.Deliveries, 1), 10), g.cfg.Consumer, at}
		for j, f := range DeadLetterFields {
			args = append(args, f, meta[j])
		}
		calls[i] = lua.Call{Keys: []string{g.cfg.Stream, g.cfg.DeadLetter}, Args: args}
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	moved, errs := make([]bool, len(dead)), make([]error, len(dead))
	for i, r := range deadLetterScript.ExecMulti(cctx, g.c, calls) {
		n, err := r.AsInt64()
		moved[i], errs[i] = err == nil && n == 1, err
	}
	return moved, errs
}

// Range returns up to count entries of the stream from start to end (XRANGE bounds: "-", "+",
// an id, or "(" and an id for an exclusive one).
func (g *Group) Range(ctx context.Context, start, end string, count int) ([]Entry, error) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	xs, err := g.c.Do(cctx, g.c.B().Xrange().Key(g.cfg.Stream).Start(start).End(end).Count(int64(count)).Build()).AsXRange()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", g.cfg.Stream, err)
	}
	es := make([]Entry, len(xs))
	for i, x := range xs {
		es[i] = Entry{ID: x.ID, Fields: x.FieldValues}
	}
	return es, nil
}

// Flushed is what to clear beside a stream once its entries are in PostgreSQL: their members
// of the backlog indexes (sorted sets of entry ids) and the marks of their edits (hash fields,
// removed only where they still hold the value given: a later edit may have replaced them).
type Flushed struct {
	indexes map[string][]string
	marks   map[string][]string
}

// Index removes entry id from the sorted set key.
func (f *Flushed) Index(key, id string) {
	if f.indexes == nil {
		f.indexes = map[string][]string{}
	}
	f.indexes[key] = append(f.indexes[key], id)
}

// Mark removes field of the hash key if it still holds value.
func (f *Flushed) Mark(key, field, value string) {
	if f.marks == nil {
		f.marks = map[string][]string{}
	}
	f.marks[key] = append(f.marks[key], field, value)
}

// Unindex clears what f names (the keys beside the stream, in its slot) in one pipelined round
// trip.
func (g *Group) Unindex(ctx context.Context, f Flushed) error {
	if len(f.indexes) == 0 && len(f.marks) == 0 {
		return nil
	}
	cmds := make(valkey.Commands, 0, len(f.indexes)+len(f.marks))
	for key, ids := range f.indexes {
		cmds = append(cmds, g.c.B().Zrem().Key(key).Member(ids...).Build())
	}
	var marks []lua.Call
	for key, fv := range f.marks {
		marks = append(marks, lua.Call{Keys: []string{key}, Args: fv})
	}
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	var res []valkey.ValkeyResult
	if len(cmds) > 0 {
		res = g.c.DoMulti(cctx, cmds...)
	}
	if len(marks) > 0 {
		res = append(res, unmarkScript.ExecMulti(cctx, g.c, marks)...)
	}
	for _, r := range res {
		if err := r.Error(); err != nil {
			return fmt.Errorf("removing flushed entries from the backlog indexes: %w", err)
		}
	}
	return nil
}

// Trim removes what every group has acked (trim.lua) and returns how many entries went.
func (g *Group) Trim(ctx context.Context, retain time.Duration) (int64, error) {
	n, _, err := g.TrimBelow(ctx, retain, "")
	return n, err
}

// TrimBelow is Trim that removes nothing at or above the id bound (empty: no bound). It also
// returns the id Trim would have trimmed below: every entry under it had been acked by every
// group when the call ran.
func (g *Group) TrimBelow(ctx context.Context, retain time.Duration, bound string) (int64, string, error) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	vs, err := trimScript.Exec(cctx, g.c, []string{g.cfg.Stream}, []string{strconv.FormatInt(retain.Milliseconds(), 10), bound}).ToArray()
	if err != nil {
		return 0, "", err
	}
	if len(vs) != 2 {
		return 0, "", fmt.Errorf("trim: %d values in the answer, want 2", len(vs))
	}
	n, err := vs[0].AsInt64()
	if err != nil {
		return 0, "", err
	}
	below, err := vs[1].ToString()
	return n, below, err
}

// DelConsumer deletes the consumer name when nothing is pending for it and it has been idle
// at least minIdle, checked and done in one step (delconsumer.lua). It reports whether it did.
func (g *Group) DelConsumer(ctx context.Context, name string, minIdle time.Duration) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	n, err := delConsumerScript.Exec(cctx, g.c, []string{g.cfg.Stream},
		[]string{g.cfg.Group, name, strconv.FormatInt(minIdle.Milliseconds(), 10)}).AsInt64()
	return n == 1, err
}

// ConsumerInfo describes one consumer of the group.
type ConsumerInfo struct {
	Name    string
	Pending int64
	Idle    time.Duration
}

// Consumers lists the group's consumers.
func (g *Group) Consumers(ctx context.Context) ([]ConsumerInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	return ReadConsumers(cctx, g.c, g.cfg.Stream, g.cfg.Group)
}

// IsNoGroup reports Valkey's NOGROUP error (no such stream or consumer group), by the error
// code that starts the reply; valkey-go has no helper for it.
func IsNoGroup(err error) bool {
	verr, ok := valkey.IsValkeyErr(err)
	return ok && strings.HasPrefix(verr.Error(), "NOGROUP")
}

// IDTime returns the time encoded in a stream id (the enqueue time, in milliseconds).
func IDTime(id string) (time.Time, bool) {
	ms, _, ok := strings.Cut(id, "-")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(n), true
}

// CompareIDs orders stream ids numerically.
func CompareIDs(a, b string) int {
	am, as, _ := strings.Cut(a, "-")
	bm, bs, _ := strings.Cut(b, "-")
	an, _ := strconv.ParseUint(am, 10, 64)
	bn, _ := strconv.ParseUint(bm, 10, 64)
	if an != bn {
		if an < bn {
			return -1
		}
		return 1
	}
	aq, _ := strconv.ParseUint(as, 10, 64)
	bq, _ := strconv.ParseUint(bs, 10, 64)
	switch {
	case aq < bq:
		return -1
	case aq > bq:
		return 1
	}
	return 0
}
