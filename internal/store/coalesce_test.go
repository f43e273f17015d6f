package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestCoalesce: 80 concurrent senders through one call at a time, public and private messages
// mixed, each user over its rate limit and retrying one client_msg_id: every message is judged
// on its own as if sent alone (each user gets exactly its limit, a retry its first id, every
// accepted message one stream entry), and the messages went in fewer calls than messages.
func TestCoalesce(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	setRate(t, b, store.RateLimit{Limit: 5, WindowSeconds: 60, Algorithm: store.Fixed})
	co := store.Coalesce(b.scripts, 1)
	ctx := context.Background()
	const users, distinct = 40, 8
	type outcome struct {
		user, msg string
		kind      message.Kind
		res       store.Result
		err       error
	}
	var (
		mu  sync.Mutex
		out []outcome
		wg  sync.WaitGroup
	)
	testenv.Do(t, b.client, "CONFIG", "RESETSTAT")
	for u := range users {
		user := fmt.Sprintf("u%d", u)
		send := func(msg string, m store.Message) {
			wg.Go(func() {
				r, err := co.Enqueue(ctx, m)
				mu.Lock()
				out = append(out, outcome{user, msg, m.Kind(), r, err})
				mu.Unlock()
			})
		}
		for i := range distinct {
			m := pub(user, strconv.Itoa(i))
			if u%2 == 1 {
				m = priv(user, fmt.Sprintf("u%d", (u+1)%users), strconv.Itoa(i))
			}
			if i == 0 { // sent twice, with one client_msg_id
				m.ClientMsgID = "c"
				send("retried", m)
			}
			send(strconv.Itoa(i), m)
		}
	}
	wg.Wait()
	accepted := map[string]int{}
	retried := map[string][]outcome{}
	ids := map[string]bool{} // kind and id: each kind's stream has its own counter
	for _, o := range out {
		var rle *store.RateLimitedError
		switch {
		case o.err == nil && !o.res.Duplicate:
			accepted[o.user]++
			id := fmt.Sprint(o.kind, o.res.CacheID)
			if ids[id] {
				t.Errorf("%s cache id %d given twice", o.kind, o.res.CacheID)
			}
			ids[id] = true
		case o.err == nil:
		case errors.As(o.err, &rle):
		default:
			t.Fatalf("%s's message %s: %v", o.user, o.msg, o.err)
		}
		if o.msg == "retried" || o.msg == "0" {
			retried[o.user] = append(retried[o.user], o)
		}
	}
	for u := range users {
		user := fmt.Sprintf("u%d", u)
		if accepted[user] != 5 {
			t.Errorf("%s: %d messages accepted, want its limit, 5", user, accepted[user])
		}
		r := retried[user]
		if len(r) != 2 || (r[0].err == nil) != (r[1].err == nil) || (r[0].err == nil && (r[0].res.CacheID != r[1].res.CacheID || r[0].res.Duplicate == r[1].res.Duplicate)) {
			t.Errorf("%s's client_msg_id sent twice: %+v, want one id, once new and once a duplicate (or both rate limited)", user, r)
		}
	}
	entries := len(streamEntries(t, b, message.Public)) + len(streamEntries(t, b, message.Private))
	if entries != len(ids) {
		t.Errorf("%d stream entries for %d accepted messages", entries, len(ids))
	}
	calls := scriptCalls(t, b)
	t.Logf("%d messages in %d script calls", len(out), calls)
	if calls >= len(out) {
		t.Errorf("%d messages took %d script calls: none went together", len(out), calls)
	}
}

// TestCoalesceCancelled: a message queued behind a call under way whose request is cancelled
// leaves the queue at once (503, ErrUnavailable) and is never sent; the call under way ends
// as it would have.
func TestCoalesceCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{Timeout: 5 * time.Second})
	co := store.Coalesce(b.scripts, 1)
	mustEnqueue(t, b, pub("a", "warm-up")) // loads the script
	b.server.Pause()
	resumed := false
	defer func() {
		if !resumed {
			b.server.Resume()
		}
	}()
	first := make(chan error, 1)
	go func() { _, err := co.Enqueue(context.Background(), pub("a", "under way")); first <- err }()
	time.Sleep(100 * time.Millisecond) // the first call is under way, held by the paused server
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := co.Enqueue(ctx, pub("a", "queued"))
	if !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the cancelled message: %v, want ErrUnavailable and its context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the cancelled message waited %s for the call under way", d)
	}
	select {
	case err := <-first:
		t.Fatalf("the call under way ended (%v) while the server was paused", err)
	default:
	}
	b.server.Resume()
	resumed = true
	if err := <-first; err != nil {
		t.Fatalf("the call under way: %v", err)
	}
	got := streamEntries(t, b, message.Public)
	if len(got) != 2 || !strings.Contains(got[1].Payload, "under way") {
		t.Errorf("stream after: %+v, want the warm-up and the message under way, not the cancelled one", got)
	}
}

// scriptCalls counts the script calls since the last CONFIG RESETSTAT.
func scriptCalls(t *testing.T, b *testBundle) int {
	t.Helper()
	calls := 0
	info, _ := testenv.Do(t, b.client, "INFO", "commandstats").ToString()
	for line := range strings.SplitSeq(info, "\r\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(line, cmd); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				calls += n
			}
		}
	}
	return calls
}

// TestCoalesceReactions: 32 concurrent users toggling emoji on four messages through one call
// at a time: each toggle judged as if alone (every answer's counts are what the toggles
// answered before it leave: per message, the answer of the highest version equals the present
// reactions the answers imply, and a repeat changes nothing), the distinct-emoji limit held,
// and the toggles went in fewer calls than toggles.
func TestCoalesceReactions(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{MaxReactions: 4})
	co := store.Coalesce(b.scripts, 1)
	ctx := context.Background()
	var ids []int64
	for i := range 4 {
		ids = append(ids, mustEnqueue(t, b, pub("alice", strconv.Itoa(i))).CacheID)
	}
	type answer struct {
		id          int64
		emoji, user string
		add         bool
		r           store.Reacted
	}
	var (
		mu      sync.Mutex
		answers []answer
		refused int
		wg      sync.WaitGroup
	)
	testenv.Do(t, b.client, "CONFIG", "RESETSTAT")
	for u := range 32 {
		wg.Go(func() {
			for k := range 20 {
				x := store.React{Kind: message.Public, CacheID: ids[(u+k)%4], ChannelID: message.DefaultChannel, UserID: fmt.Sprintf("u%d", u),
					Emoji: fmt.Sprintf(":e%d:", (u/4+k/4)%7), Add: k%3 != 2}
				r, err := co.React(ctx, x)
				mu.Lock()
				switch {
				case errors.Is(err, store.ErrTooManyReactions):
					refused++
				case err != nil:
					t.Errorf("toggle %+v: %v", x, err)
				default:
					answers = append(answers, answer{x.CacheID, x.Emoji, x.UserID, x.Add, r})
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	calls := scriptCalls(t, b)
	t.Logf("%d toggles (%d refused: too many emoji) in %d script calls", len(answers)+refused, refused, calls)
	if calls >= len(answers)+refused {
		t.Errorf("%d toggles took %d script calls: none went together", len(answers)+refused, calls)
	}
	if refused == 0 {
		t.Error("no toggle met the distinct-emoji limit: the run does not test it")
	}
	for _, id := range ids {
		last := map[[2]string]answer{}
		var newest answer
		for _, a := range answers {
			if a.id != id {
				continue
			}
			if a.r.Version >= newest.r.Version {
				newest = a
			}
			k := [2]string{a.emoji, a.user}
			if p, ok := last[k]; !ok || a.r.Version >= p.r.Version {
				last[k] = a
			}
		}
		count := map[string]int64{}
		for k, a := range last {
			if a.add {
				count[k[0]]++
			}
		}
		var want []message.Count
		got, _ := message.ParseCounts(newest.r.Counts)
		for _, c := range got {
			want = append(want, message.Count{Emoji: c.Emoji, Count: count[c.Emoji]})
			delete(count, c.Emoji)
		}
		for e, n := range count {
			if n > 0 {
				t.Errorf("message %d: %s present %d times by the answers, not in the last counts %s", id, e, n, newest.r.Counts)
			}
		}
		if len(got) > 4 || !slices.Equal(got, want) {
			t.Errorf("message %d: the last counts %s, the answers imply %v", id, newest.r.Counts, want)
		}
	}
}
