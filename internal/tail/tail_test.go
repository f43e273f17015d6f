package tail_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/tail"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// runTails starts the tails of cfg until the test ends.
func runTails(t *testing.T, cfg tail.Config) *tail.Tails {
	t.Helper()
	tails, err := tail.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = tails.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return tails
}

// startTails runs tails of the single layout on a Valkey of their own (cfg's Valkey and Layout
// are set; Block defaults to 100 ms, so that readers notice a new subscriber quickly).
func startTails(t *testing.T, cfg tail.Config) (*tail.Tails, valkey.Client, keyspace.Keys) {
	t.Helper()
	c := testenv.StartValkey(t).Client(t)
	keys, _ := keyspace.New("")
	cfg.Valkey, cfg.Layout = c, keys
	if cfg.Block == 0 {
		cfg.Block = 100 * time.Millisecond
	}
	return runTails(t, cfg), c, keys
}

// addEntry appends message id of the kind's stream, written as the enqueue script writes it;
// fields are more of its data's fields ("\"channel_id\":\"a\","), owner "a".
func addEntry(t *testing.T, c valkey.Client, keys keyspace.Keys, kind message.Kind, id int, fields string) {
	t.Helper()
	n := strconv.Itoa(id)
	testenv.Do(t, c, "XADD", keys.Stream(kind), "*", "cache_id", n, "kind", kind.String(),
		"payload", `{"cache_id":`+n+`,"data":{"owner_id":"a",`+fields+`"username":"","content":"x","created_at":"2026-12-01T00:00:00Z"}}`)
}

// reader hands a subscription's events out one at a time.
type reader struct {
	s    *tail.Subscription
	held []tail.Event
}

func (r *reader) next(ctx context.Context, wait time.Duration) (tail.Event, bool, error) {
	if len(r.held) == 0 { // Next's slice is ours until the next call, made only once it is used up
		evs, err := r.s.Next(ctx, wait)
		if err != nil || len(evs) == 0 {
			return tail.Event{}, false, err
		}
		r.held = evs
	}
	ev := r.held[0]
	r.held = r.held[1:]
	return ev, true, nil
}

// TestSlowSubscriberDropped: a subscriber that reads nothing is dropped once its buffer is full,
// and the one reading beside it gets every event, in order, unstalled; the dropped one learns it
// (ErrDropped) after the events it holds. A subscriber may lag by the buffer, no more.
func TestSlowSubscriberDropped(t *testing.T) {
	t.Parallel()
	tails, c, keys := startTails(t, tail.Config{Buffer: 32})
	ctx := context.Background()
	slow, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), "")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), "")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	const n = 100
	got := make(chan int, n)
	fastEvents, slowEvents := &reader{s: fast}, &reader{s: slow}
	go func() {
		for range n {
			ev, ok, err := fastEvents.next(ctx, 5*time.Second)
			if err != nil || !ok {
				close(got)
				return
			}
			got <- len(ev.Data)
		}
		close(got)
	}()
	for i := 1; i <= n; i++ {
		addEntry(t, c, keys, message.Public, i, "")
		if i%2 == 0 {
			time.Sleep(10 * time.Millisecond) // bursts smaller than the buffer, which a reader keeps up with
		}
	}
	received := 0
	for range got {
		received++
	}
	if received != n {
		t.Errorf("the reading subscriber got %d of %d events", received, n)
	}
	held := 0
	for {
		_, ok, err := slowEvents.next(ctx, time.Second)
		if errors.Is(err, tail.ErrDropped) {
			break
		}
		if err != nil || !ok {
			t.Fatalf("the slow subscriber: %v, %t after %d events; want ErrDropped", err, ok, held)
		}
		held++
	}
	if held > 32 {
		t.Errorf("the slow subscriber held %d events past its buffer of 32", held)
	}
}

// TestIdleReadersPark: with nobody subscribed the readers stop reading (no XREAD while entries
// arrive); the next subscriber's live events start at the stream's end, not where the readers
// stopped, and a cursor from before the pause catches up every entry in between once.
func TestIdleReadersPark(t *testing.T) {
	t.Parallel()
	tails, c, keys := startTails(t, tail.Config{})
	ctx := context.Background()
	add := func(i int) { addEntry(t, c, keys, message.Public, i, "") }
	var cursor string
	readers := map[*tail.Subscription]*reader{}
	next := func(s *tail.Subscription) int {
		t.Helper()
		if readers[s] == nil {
			readers[s] = &reader{s: s}
		}
		ev, ok, err := readers[s].next(ctx, 5*time.Second)
		cursor = ev.ID
		if err != nil || !ok {
			t.Fatalf("next: %t, %v", ok, err)
		}
		var v struct {
			CacheID int `json:"cache_id"`
		}
		if err := json.Unmarshal(ev.Data, &v); err != nil {
			t.Fatal(err)
		}
		return v.CacheID
	}
	first, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), "")
	if err != nil {
		t.Fatal(err)
	}
	add(1)
	if got := next(first); got != 1 {
		t.Fatalf("first event %d, want 1", got)
	}
	afterFirst := cursor
	first.Close()
	time.Sleep(300 * time.Millisecond) // the readers park
	xreads := func() int {
		info, _ := testenv.Do(t, c, "INFO", "commandstats").ToString()
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_xread:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	before := xreads()
	for i := 2; i <= 50; i++ {
		add(i)
		time.Sleep(5 * time.Millisecond)
	}
	if after := xreads(); after != before {
		t.Errorf("%d XREADs while nobody was subscribed, want none", after-before)
	}
	live, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), "")
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	add(51)
	if got := next(live); got != 51 {
		t.Fatalf("a new subscriber's first event is %d, want 51 (the entries before it are not live)", got)
	}
	// A cursor from before the pause: 2..51 once each, in order, then the live 52.
	cur, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), afterFirst)
	if err != nil {
		t.Fatal(err)
	}
	defer cur.Close()
	add(52)
	for want := 2; want <= 52; want++ {
		if got := next(cur); got != want {
			t.Fatalf("resumed subscriber: event %d, want %d", got, want)
		}
	}
}

// TestReplayedPrivateDeletionReachesBothTails: a private deletion that went through the dead
// letters (dead-lettered by a consumer, replayed with `flushworker dlq replay`) still names its
// two users, so both private tails get it. replay.lua once copied only cache_id, kind and
// payload, and the replayed deletion reached neither.
func TestReplayedPrivateDeletionReachesBothTails(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	keys, _ := keyspace.New("")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := store.Open(c, store.Config{Layout: keys})
	if err != nil {
		t.Fatal(err)
	}
	res, err := st.Enqueue(ctx, store.Message{OwnerID: "ann", RecipientID: "bob",
		Data: []byte(`{"owner_id":"ann","recipient_id":"bob","username":"","content":"x","created_at":"2026-12-01T00:00:00Z"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, message.Ref{Kind: message.Private, CacheID: res.CacheID, OwnerID: "ann", RecipientID: "bob"}); err != nil {
		t.Fatal(err)
	}
	fs := keys.FlushStreams()[1]
	g, err := streams.NewGroup(c, streams.GroupConfig{Stream: fs.Stream, DeadLetter: fs.DeadLetter, Group: "flush", Consumer: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Create(ctx); err != nil {
		t.Fatal(err)
	}
	es, err := g.Read(ctx, ">", 10, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("read %d entries (%v), want the message and its deletion", len(es), err)
	}
	deletion := es[1]
	if moved, errs := g.MoveToDeadLetter(ctx, []streams.Failed{{Entry: deletion, Reason: "poison", Error: "test"}}, time.Now()); !moved[0] {
		t.Fatalf("dead-lettering the deletion: %v", errs[0])
	}

	tails := runTails(t, tail.Config{Valkey: c, Layout: keys, Block: 100 * time.Millisecond})
	var subs []*tail.Subscription
	for _, user := range []string{"ann", "bob"} {
		s, err := tails.Subscribe(ctx, tail.Follow(message.PrivateTimeline(user)), "")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs = append(subs, s)
	}
	dl := streams.NewDeadLetters(c)
	letters, err := dl.List(ctx, fs, "", 10)
	if err != nil || len(letters) != 1 {
		t.Fatalf("%d dead letters (%v), want 1", len(letters), err)
	}
	if id, err := dl.Replay(ctx, fs, letters[0].ID); err != nil || id == "" {
		t.Fatalf("replay: %q, %v", id, err)
	}
	for i, s := range subs {
		ev, ok, err := (&reader{s: s}).next(ctx, 5*time.Second)
		if err != nil || !ok || ev.Type != "delete" || string(ev.Data) != `{"cache_id":`+strconv.FormatInt(res.CacheID, 10)+`}` {
			t.Errorf("user %d's private tail: %q %s (%t, %v), want the replayed deletion", i, ev.Type, ev.Data, ok, err)
		}
	}
}

// TestRoutingAndBatches: each event reaches exactly the subscribers that follow it — a channel,
// several, every channel; a private message both its users, a self-DM its user once — and a
// subscriber that has not read for a while takes everything queued in one Next (one write).
func TestRoutingAndBatches(t *testing.T) {
	t.Parallel()
	tails, c, keys := startTails(t, tail.Config{})
	ctx := context.Background()
	subscribe := func(sel tail.Selection) *tail.Subscription {
		s, err := tails.Subscribe(ctx, sel, "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a := subscribe(tail.Follow(message.ChannelTimeline("a")))
	ab := subscribe(tail.Selection{Kind: message.Public, Channels: map[string]bool{"a": true, "b": true}})
	b := subscribe(tail.Follow(message.ChannelTimeline("b")))
	all := subscribe(tail.Selection{Kind: message.Public})
	ann := subscribe(tail.Follow(message.PrivateTimeline("a")))
	bob := subscribe(tail.Follow(message.PrivateTimeline("bob")))
	cid := subscribe(tail.Follow(message.PrivateTimeline("cid")))
	add := func(kind message.Kind, id int, fields string) { addEntry(t, c, keys, kind, id, fields) }
	for i := 1; i <= 30; i++ {
		add(message.Public, i, `"channel_id":"`+string(rune('a'+i%3))+`",`) // b, c, a, b, …
	}
	add(message.Private, 31, `"recipient_id":"bob",`)
	add(message.Private, 32, `"recipient_id":"a",`)
	add(message.Private, 33, `"recipient_id":"cid",`)
	ids := func(s *tail.Subscription, want int) []int {
		t.Helper()
		var got []int
		for len(got) < want {
			evs, err := s.Next(ctx, 5*time.Second)
			if err != nil || len(evs) == 0 {
				t.Fatalf("after %v: %d events, %v", got, len(evs), err)
			}
			for _, ev := range evs {
				var m struct {
					CacheID int `json:"cache_id"`
				}
				if err := json.Unmarshal(ev.Data, &m); err != nil {
					t.Fatal(err)
				}
				got = append(got, m.CacheID)
			}
		}
		return got
	}
	// Once the firehose has the last public event, every public subscriber has its events
	// queued (one publish queues an event on all of them): each takes them in one Next.
	ids(all, 30)
	ids(cid, 1) // likewise the private ones, once cid has the last
	for _, tc := range []struct {
		name string
		s    *tail.Subscription
		want []int
	}{
		{"channel a", a, []int{3, 6, 9, 12, 15, 18, 21, 24, 27, 30}},
		{"channel b", b, []int{1, 4, 7, 10, 13, 16, 19, 22, 25, 28}},
		{"channels a and b", ab, []int{1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 24, 25, 27, 28, 30}},
		{"a (sent 31, 33; self-DM 32 once)", ann, []int{31, 32, 33}},
		{"bob", bob, []int{31}},
	} {
		evs, err := tc.s.Next(ctx, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := make([]int, len(evs))
		for i, ev := range evs {
			var m struct {
				CacheID int `json:"cache_id"`
			}
			_ = json.Unmarshal(ev.Data, &m)
			got[i] = m.CacheID
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: one Next gave %v, want %v", tc.name, got, tc.want)
		}
		if evs, err := tc.s.Next(ctx, 200*time.Millisecond); len(evs) != 0 || err != nil {
			t.Errorf("%s: then %d more events (%v), want none", tc.name, len(evs), err)
		}
	}
}

// TestPacing: with a write budget, a lone event leaves at once, and the events that follow it
// within the subscriber's share of the budget (here 1 subscriber, 1 write a second: 1 s) are
// held and taken together; with no budget each is taken as it comes.
func TestPacing(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		budget int
		takes  int // the most takes the 21 events may come in
	}{
		{"budget 1/s", 1, 2},
		{"no budget", 0, 21},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tails, c, keys := startTails(t, tail.Config{WriteBudget: tc.budget})
			ctx := context.Background()
			s, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(message.DefaultChannel)), "")
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			add := func(i int) { addEntry(t, c, keys, message.Public, i, "") }
			add(1)
			start := time.Now()
			evs, err := s.Next(ctx, 5*time.Second)
			if err != nil || len(evs) != 1 {
				t.Fatalf("the lone event: %d events, %v", len(evs), err)
			}
			if took := time.Since(start); took > 900*time.Millisecond {
				t.Errorf("the lone event took %s: held by the pacing", took)
			}
			go func() {
				for i := 2; i <= 21; i++ { // 20 events within 200 ms
					add(i)
					time.Sleep(10 * time.Millisecond)
				}
			}()
			got, takes := 1, 1
			for got < 21 {
				evs, err := s.Next(ctx, 5*time.Second)
				if err != nil || len(evs) == 0 {
					t.Fatalf("after %d events: %d, %v", got, len(evs), err)
				}
				got += len(evs)
				takes++
			}
			if takes > tc.takes {
				t.Errorf("21 events in %d takes, want at most %d", takes, tc.takes)
			}
			if tc.budget == 0 && takes < 8 {
				t.Errorf("21 events 10 ms apart in %d takes with no budget: held?", takes)
			}
		})
	}
}

// TestUnreadableEntriesAreSkippedOutLoud: an entry the tail cannot decode — a payload that is
// not JSON, an operation it does not know — is never dropped in silence: it becomes a
// "skipped" event ({"error":"bad_entry","stream_id":…}) for the subscribers of the channel it
// names, or for every subscriber when it names none, live and on a catch-up from a cursor.
func TestUnreadableEntriesAreSkippedOutLoud(t *testing.T) {
	t.Parallel()
	tails, c, keys := startTails(t, tail.Config{})
	ctx := context.Background()
	follow := func(channel, cursor string) *reader {
		s, err := tails.Subscribe(ctx, tail.Follow(message.ChannelTimeline(channel)), cursor)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return &reader{s: s}
	}
	a, b := follow("a", ""), follow("b", "")
	stream := keys.Stream(message.Public)
	addEntry(t, c, keys, message.Public, 1, `"channel_id":"a",`)
	testenv.Do(t, c, "XADD", stream, "*", "cache_id", "2", "kind", "message", "payload", "{broken")
	testenv.Do(t, c, "XADD", stream, "*", "cache_id", "3", "kind", "reaction", "payload",
		`{"cache_id":3,"data":{"owner_id":"a","channel_id":"a","username":"","content":"x","created_at":"2026-12-01T00:00:00Z"}}`)
	addEntry(t, c, keys, message.Public, 4, `"channel_id":"a",`)
	addEntry(t, c, keys, message.Public, 5, `"channel_id":"b",`)

	types := func(r *reader, n int) ([]string, []tail.Event) {
		t.Helper()
		var out []string
		var evs []tail.Event
		for range n {
			ev, ok, err := r.next(ctx, 5*time.Second)
			if err != nil || !ok {
				t.Fatalf("after %v: %v, %v", out, ok, err)
			}
			out = append(out, ev.Type)
			evs = append(evs, ev)
		}
		return out, evs
	}
	gotA, evs := types(a, 4)
	if want := []string{"message", tail.EventSkipped, tail.EventSkipped, "message"}; !slices.Equal(gotA, want) {
		t.Fatalf("channel a's subscriber got %v, want %v", gotA, want)
	}
	if !strings.HasPrefix(string(evs[1].Data), `{"error":"bad_entry","stream_id":"`) {
		t.Errorf("a skipped event's data: %s", evs[1].Data)
	}
	if gotB, _ := types(b, 2); !slices.Equal(gotB, []string{tail.EventSkipped, "message"}) {
		t.Fatalf("channel b's subscriber got %v, want the unroutable entry skipped, then its message", gotB)
	}
	// A catch-up from the first event meets the same entries in the stream.
	if got, _ := types(follow("a", evs[0].ID), 3); !slices.Equal(got, gotA[1:]) {
		t.Fatalf("a catch-up of channel a got %v, want %v", got, gotA[1:])
	}
}
