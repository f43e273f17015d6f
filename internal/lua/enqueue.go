package lua

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// Message is one message to enqueue.
type Message struct {
	// Kind selects the script, stream and rings.
	Kind keyspace.Kind
	// OwnerID is the sender; it names the rate-limit key and, for private messages, a ring.
	OwnerID string
	// RecipientID is the receiver of a private message.
	RecipientID string
	// ClientMsgID, when not empty, makes the enqueue retry-safe: the same owner and ClientMsgID
	// get the first cache id back for ClientMsgTTL.
	ClientMsgID string
	// Data is the message as a JSON object; it becomes the ring entry's "data".
	Data []byte
}

// Result is an accepted message.
type Result struct {
	// CacheID is the message's id.
	CacheID int64
	// StreamID is the flush-stream entry's id; empty for a duplicate.
	StreamID string
	// Duplicate reports a retry of an already accepted ClientMsgID: nothing new was stored.
	Duplicate bool
}

// Enqueue accepts one message: rate limit, backlog cap, id, rings and flush stream in one
// atomic step. It returns a *RateLimitedError, ErrBacklogFull or ErrUnavailable when the
// message was not accepted.
func (s *Scripts) Enqueue(ctx context.Context, m Message) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sc, c := s.enqueueCall(m)
	return parseEnqueue(sc.Exec(ctx, s.c, c.Keys, c.Args))
}

// EnqueueCommand is the EVALSHA command line (command name first) that Enqueue sends for m,
// for tools that drive Valkey directly: make bench runs it through valkey-benchmark to measure
// the script's rate without chatpipe's client in the way. The script must be loaded first.
func (s *Scripts) EnqueueCommand(m Message) []string {
	sc, c := s.enqueueCall(m)
	cmd := []string{"EVALSHA", sc.sha, strconv.Itoa(len(c.Keys))}
	cmd = append(cmd, c.Keys...)
	return append(cmd, c.Args...)
}

// Outcome is the result of one message of a batch.
type Outcome struct {
	Result
	Err error
}

// EnqueueMany enqueues messages in one pipelined round trip. Outcomes come back in order;
// each message is accepted or rejected on its own. Messages of one kind only.
func (s *Scripts) EnqueueMany(ctx context.Context, kind keyspace.Kind, msgs []Message) []Outcome {
	out := make([]Outcome, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	calls := make([]Call, len(msgs))
	var sc *Script
	for i, m := range msgs {
		m.Kind = kind
		sc, calls[i] = s.enqueueCall(m)
	}
	for i, r := range sc.ExecMulti(ctx, s.c, calls) {
		out[i].Result, out[i].Err = parseEnqueue(r)
	}
	return out
}

func (s *Scripts) enqueueCall(m Message) (*Script, Call) {
	k := s.cfg.Keys
	keys := make([]string, 7, 8)
	keys[0] = k.RateSettings()
	keys[1] = k.RateLimit(m.OwnerID)
	keys[2] = k.RateLimitGCRA(m.OwnerID)
	keys[3] = k.ClientMsg(m.Kind, m.OwnerID, m.ClientMsgID)
	keys[4] = k.Counter(m.Kind)
	keys[5] = k.Stream(m.Kind)
	sc := s.enqueuePublic
	if m.Kind == keyspace.Private {
		sc = s.enqueuePrivate
		keys[6] = k.PrivateRing(m.OwnerID)
		keys = append(keys, k.PrivateRing(m.RecipientID))
	} else {
		keys[6] = k.PublicRing()
	}
	args := make([]string, 0, 9)
	args = append(args, string(m.Data))
	args = append(args, s.staticArgs[m.Kind]...)
	if m.ClientMsgID != "" {
		args[4] = "1"
	} else {
		args[4] = "0"
	}
	return sc, Call{Keys: keys, Args: args}
}

func parseEnqueue(r valkey.ValkeyResult) (Result, error) {
	if err := r.Error(); err != nil {
		return Result{}, classify(err)
	}
	arr, err := r.ToArray()
	if err != nil || len(arr) == 0 {
		return Result{}, fmt.Errorf("enqueue: unexpected reply: %v", r)
	}
	code, err := arr[0].AsInt64()
	if err != nil {
		return Result{}, fmt.Errorf("enqueue: unexpected reply code: %w", err)
	}
	switch {
	case code == 0 && len(arr) == 3:
		id, err1 := arr[1].AsInt64()
		sid, err2 := arr[2].ToString()
		if err1 != nil || err2 != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected accept reply: %v", r)
		}
		return Result{CacheID: id, StreamID: sid}, nil
	case code == 1 && len(arr) == 2:
		id, err := arr[1].AsInt64()
		if err != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected duplicate reply: %w", err)
		}
		return Result{CacheID: id, Duplicate: true}, nil
	case code == 2 && len(arr) == 2:
		ms, err := arr[1].AsInt64()
		if err != nil {
			return Result{}, fmt.Errorf("enqueue: unexpected rate-limit reply: %w", err)
		}
		return Result{}, &RateLimitedError{RetryAfter: time.Duration(ms) * time.Millisecond}
	case code == 3:
		return Result{}, ErrBacklogFull
	}
	return Result{}, fmt.Errorf("enqueue: unexpected reply code %d", code)
}
