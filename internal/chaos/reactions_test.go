package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	chatpipe "github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// reactionEmoji are the run's 30 emoji: sequences, flags, ZWJ families, short codes, and the
// characters a path, a JSON string or a Lua pattern treats apart.
var reactionEmoji = []string{"👍", "❤️", "😂", "🎉", "🔥", "👀", "🙏", "✅", "🇫🇷", "👩‍👩‍👧", "🏳️‍🌈", "👍🏽",
	":+1:", ":tada:", ":ship-it:", `:"quoted":`, `:back\slash:`, "a/b", "%41", "<&>", "?x=1", "#hash", "..",
	"ü", "漢字", "%", "[x]", "(y)", "*", "💯"}

// reactAnswer is one reaction answered 200: the toggle, and the counts and version it answered.
type reactAnswer struct {
	emoji, user string
	add         bool
	version     int64
	counts      []chatpipe.Reaction
	changed     bool
}

// reactLedger is what the clients were told of reactions.
type reactLedger struct {
	mu       sync.Mutex
	answers  map[int64][]reactAnswer
	refused  map[string]int // error code → count
	unknown  int
	requests int
}

// expected is the message's counts and their version as the answers imply: the answer of the
// highest version (toggles that changed nothing answer the current one).
func (l *reactLedger) expected(id int64) (counts []chatpipe.Reaction, version int64, present map[[2]string]bool) {
	present = map[[2]string]bool{}
	last := map[[2]string]reactAnswer{}
	for _, a := range l.answers[id] {
		if a.version >= version {
			counts, version = a.counts, a.version
		}
		k := [2]string{a.emoji, a.user}
		if p, ok := last[k]; !ok || a.version >= p.version {
			last[k] = a
		}
	}
	for k, a := range last {
		if a.add {
			present[k] = true
		}
	}
	return counts, version, present
}

// countsString writes counts as emoji=count pairs in order.
func countsString(cs []chatpipe.Reaction) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = fmt.Sprintf("%s=%d", c.Emoji, c.Count)
	}
	return strings.Join(parts, " ")
}

// TestReactionsRacing proves reactions as users see them, on the real binaries in the single
// layout: 200 messages in 20 channels, 8 clients adding and removing 30 emoji at random (20 000
// requests; the messages picked with a skew, each client's toggles by 3 users), two workers, one SIGKILLed and restarted midway (the other reclaims its batch),
// 10 messages deleted while reactions flow, a firehose tail from the start.
func TestReactionsRacing(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries")
	v := testenv.StartValkey(t)
	runReactions(t, []string{"VALKEY_ADDR=" + v.Addr})
}

// TestReactionsRacingCluster is the same run in the partitioned layout on a 3+3 cluster.
func TestReactionsRacingCluster(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries on a cluster")
	cl := testenv.StartCluster(t)
	all := strings.Split(cl.Addrs, ",")
	runReactions(t, []string{"KEY_LAYOUT=partitioned", "KEY_PARTITIONS=16", "VALKEY_MODE=cluster", "VALKEY_ADDR=" + strings.Join(all[:2], ",")})
}

func runReactions(t *testing.T, valkeyEnv []string) {
	const (
		messages, clients, perClient = 200, 8, 2500
		deletions                    = 10
	)
	seed := seedOr(34)
	t.Logf("seed %d (replay: CHAOS_SEED=%d)", seed, seed)
	d := newDeployment(t, valkeyEnv...)
	_, w1, base := d.pair(t, []string{"RECENT_SIZE=500", "DATABASE_URL=" + d.dsn}, []string{"RECENT_SIZE=500", "FLUSH_BATCH_SIZE=100", "FLUSH_MIN_IDLE=5s"})
	w2 := d.worker(t, "w2", "RECENT_SIZE=500", "FLUSH_BATCH_SIZE=100", "FLUSH_MIN_IDLE=5s")
	w2.start(t)
	killOnCleanup(t, w2)
	tailed := newTailClient(t, base+"/v1/channels/stream?all=true")
	defer tailed.stop()

	l := newLedger()
	channels := newChannelSet(20)
	sender := &client{name: "sender", base: base, http: keepAlive(5 * time.Second), l: l, channels: channels}
	for i := range messages {
		sender.send("message", fmt.Sprintf("u%d", i%10), fmt.Sprintf("r%d", i), 50)
	}
	if len(l.accepted["message"]) != messages {
		t.Fatalf("%d of %d messages accepted (%v rejected)", len(l.accepted["message"]), messages, l.rejected)
	}
	ids := sortedIDs(l.accepted["message"])
	rl := &reactLedger{answers: map[int64][]reactAnswer{}, refused: map[string]int{}}
	deleted := map[int64]bool{}
	var deletedMu sync.Mutex
	api := sender.api(30)

	start := time.Now()
	var wg sync.WaitGroup
	var done atomic.Int64
	frozen := make(chan struct{})
	for k := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(k+1)))
		wg.Go(func() {
			for n := range perClient {
				// Skewed, as reactions are: a few messages draw most of them (so one
				// worker batch often holds several toggles of one user's emoji).
				id := ids[min(len(ids)-1, int(math.Pow(float64(len(ids)+1), rng.Float64()))-1)]
				target := chatpipe.Target{Channel: l.channel[l.accepted["message"][id]], CacheID: id}
				emoji := reactionEmoji[rng.IntN(len(reactionEmoji))]
				user := fmt.Sprintf("c%d-u%d", k, rng.IntN(3))
				add := rng.Float64() < 0.6
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var r chatpipe.Reactions
				var err error
				if add {
					r, err = api.React(ctx, target, emoji, user)
				} else {
					r, err = api.Unreact(ctx, target, emoji, user)
				}
				cancel()
				if done.Add(1) == clients*perClient*4/5 {
					close(frozen)
				}
				rl.mu.Lock()
				rl.requests++
				switch e := refusal(err); {
				case err == nil:
					rl.answers[id] = append(rl.answers[id], reactAnswer{emoji, user, add, r.ReactionsVersion, r.Reactions, r.Changed})
				case e != nil:
					rl.refused[e.Code]++
				default:
					rl.unknown++
				}
				rl.mu.Unlock()
				// Client 0 deletes a message now and then while the others react to it.
				if k == 0 && n%(perClient/(deletions+1)) == perClient/(deletions+1)-1 {
					victim := ids[rng.IntN(len(ids))]
					if sender.deleteOK(victim) {
						deletedMu.Lock()
						deleted[victim] = true
						deletedMu.Unlock()
					}
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	w2.kill() // mid-run: what it read waits pending until it comes back
	time.Sleep(2 * time.Second)
	w2.start(t)
	// Near the end w2 freezes holding what it read; w1 writes the newer reactions meanwhile, and
	// w2's batch, killed and reclaimed, reaches PostgreSQL after them: older counts and
	// toggles must not overwrite newer ones.
	<-frozen
	w2.signal(syscall.SIGSTOP)
	wg.Wait()
	time.Sleep(500 * time.Millisecond)
	w2.kill()
	w2.start(t)
	t.Logf("%d reaction requests in %s: %d answered 200, %v refused, %d without an answer; %d messages deleted",
		rl.requests, time.Since(start).Round(time.Millisecond), rl.requests-rl.unknown-sum(rl.refused), rl.refused, rl.unknown, len(deleted))
	if rl.unknown > 0 {
		t.Errorf("%d reactions got no definite answer", rl.unknown)
	}
	for code := range rl.refused {
		if code != "not_found" && code != "too_many_reactions" {
			t.Errorf("reactions refused %s: %d", code, rl.refused[code])
		}
	}

	// The answers agree with themselves: each message's last counts are its present reactions.
	bad := 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, id := range ids {
		counts, _, present := rl.expected(id)
		byEmoji := map[string]int64{}
		for k := range present {
			byEmoji[k[0]]++
		}
		got := map[string]int64{}
		for _, c := range counts {
			got[c.Emoji] = c.Count
		}
		if !deleted[id] && !maps.Equal(got, byEmoji) {
			fail("message %d: its last answer counts %v, its answered toggles leave %v", id, got, byEmoji)
		}
	}

	// PostgreSQL: one row per present reaction, the counts row equal to the last answer and to
	// the rows; nothing of a deleted message.
	conn, err := pgx.Connect(t.Context(), d.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	type stored struct {
		present map[[2]string]bool
		counts  string
		version int64
	}
	// read reads the rows and the counts in one snapshot: read apart, a batch committed between
	// the two reads shows counts ahead of the rows.
	read := func() map[int64]*stored {
		tx, err := conn.BeginTx(t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(t.Context()) }()
		out := map[int64]*stored{}
		at := func(id int64) *stored {
			if out[id] == nil {
				out[id] = &stored{present: map[[2]string]bool{}}
			}
			return out[id]
		}
		rows, err := tx.Query(t.Context(), "SELECT cache_id, emoji, user_id, removed FROM chat_message_reactions")
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		var emoji, user string
		var removed bool
		_, err = pgx.ForEachRow(rows, []any{&id, &emoji, &user, &removed}, func() error {
			s := at(id)
			if !removed {
				s.present[[2]string{emoji, user}] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err = tx.Query(t.Context(), "SELECT cache_id, reactions::text, reactions_version FROM chat_message_reaction_counts")
		if err != nil {
			t.Fatal(err)
		}
		var counts string
		var version int64
		_, err = pgx.ForEachRow(rows, []any{&id, &counts, &version}, func() error {
			s := at(id)
			s.counts, s.version = counts, version
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// compare lists where PostgreSQL differs from the answers. Two workers commit in either
	// order, so PostgreSQL is compared until it holds the final state (or a minute passed).
	rowsTotal := 0
	compare := func(db map[int64]*stored) []string {
		var diffs []string
		rowsTotal = 0
		for _, id := range ids {
			counts, version, present := rl.expected(id)
			s := db[id]
			if deleted[id] || version == 0 {
				if s != nil {
					diffs = append(diffs, fmt.Sprintf("message %d (deleted %t) has reactions in PostgreSQL: %+v", id, deleted[id], s))
				}
				continue
			}
			if s == nil {
				diffs = append(diffs, fmt.Sprintf("message %d has no reactions in PostgreSQL, want %s at %d", id, countsString(counts), version))
				continue
			}
			rowsTotal += len(s.present)
			var stored []chatpipe.Reaction
			if err := json.Unmarshal([]byte(s.counts), &stored); err != nil {
				diffs = append(diffs, fmt.Sprintf("message %d's counts %q: %v", id, s.counts, err))
				continue
			}
			byEmoji := map[string]int64{}
			for k := range s.present {
				byEmoji[k[0]]++
			}
			got := map[string]int64{}
			for _, c := range stored {
				got[c.Emoji] = c.Count
			}
			switch {
			case !maps.Equal(s.present, present):
				diffs = append(diffs, fmt.Sprintf("message %d: PostgreSQL's rows and the answers differ: %s", id, rl.explain(id, s.present, present)))
			case countsString(stored) != countsString(counts) || s.version != version:
				diffs = append(diffs, fmt.Sprintf("message %d: PostgreSQL's counts %s at %d, the last answer %s at %d", id, countsString(stored), s.version, countsString(counts), version))
			case !maps.Equal(got, byEmoji):
				diffs = append(diffs, fmt.Sprintf("message %d: PostgreSQL's counts %v and its rows %v differ", id, got, byEmoji))
			}
		}
		return diffs
	}
	var diffs []string
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		if diffs = compare(read()); len(diffs) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, d := range diffs {
		fail("%s", d)
	}

	// Every channel's history, both ways, and its ring; as a viewer too.
	byChannel := l.byChannel()
	for _, ch := range channels.list() {
		path := "/v1/channels/" + ch + "/messages"
		views := map[string][]testenv.HistoryMessage{
			"history backward": testenv.ScanHistory(t, http.DefaultClient, base, path+"/history", true, 37),
			"history forward":  testenv.ScanHistory(t, http.DefaultClient, base, path+"/history", false, 37),
			"recent":           testenv.ScanRecent(t, http.DefaultClient, base+path+"/recent"),
		}
		for what, msgs := range views {
			want := 0
			for _, id := range byChannel[ch] {
				if !deleted[id] {
					want++
				}
			}
			if len(msgs) != want {
				fail("%s %s: %d messages, want %d", ch, what, len(msgs), want)
			}
			for _, m := range msgs {
				counts, version, _ := rl.expected(m.CacheID)
				if got := m.Counts(); got != countsString(counts) || (len(counts) > 0 && m.ReactionsVersion != version) {
					fail("%s %s: message %d shows %q at %d, want %q at %d", ch, what, m.CacheID, got, m.ReactionsVersion, countsString(counts), version)
				}
			}
		}
	}

	// The tail: per message, the reaction events in rising version, the last one the last
	// answer's counts.
	tailed.mu.Lock()
	last := map[int64]testenv.HistoryMessage{}
	events := 0
	for _, ev := range tailed.evs {
		if ev.Type != "reaction" {
			continue
		}
		events++
		var m testenv.HistoryMessage
		if err := json.Unmarshal([]byte(ev.Data), &m); err != nil {
			t.Fatalf("reaction event %q: %v", ev.Data, err)
		}
		if p, ok := last[m.CacheID]; ok && m.ReactionsVersion <= p.ReactionsVersion {
			fail("tail: message %d's reaction at %d after one at %d", m.CacheID, m.ReactionsVersion, p.ReactionsVersion)
		}
		last[m.CacheID] = m
	}
	tailed.mu.Unlock()
	for _, id := range ids {
		counts, version, _ := rl.expected(id)
		m, ok := last[id]
		switch {
		case deleted[id]:
		case version == 0 && ok:
			fail("tail: reactions of %d, which no answer changed", id)
		case version > 0 && counts != nil && (!ok || m.Counts() != countsString(counts) || m.ReactionsVersion != version):
			fail("tail: the last reaction of %d is %q at %d, want %q at %d", id, m.Counts(), m.ReactionsVersion, countsString(counts), version)
		}
	}
	t.Logf("%d messages (%d deleted), %d present reactions in PostgreSQL, %d reaction events on the tail, %d differences; w2 resumed held entries %d times",
		len(ids), len(deleted), rowsTotal, events, bad, strings.Count(w2.logs.String(), "resuming own pending entries"))
	if !strings.Contains(w1.logs.String(), "consuming") {
		t.Error("the worker never ran")
	}
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// explain lists the reactions present in one set only, each with its answers (add or remove,
// version).
func (l *reactLedger) explain(id int64, stored, answered map[[2]string]bool) string {
	var b strings.Builder
	for _, side := range []struct {
		name string
		in   map[[2]string]bool
		not  map[[2]string]bool
	}{{"only in PostgreSQL", stored, answered}, {"only in the answers", answered, stored}} {
		for k := range side.in {
			if side.not[k] {
				continue
			}
			fmt.Fprintf(&b, "%s: %s by %s, answered", side.name, k[0], k[1])
			for _, a := range l.answers[id] {
				if a.emoji == k[0] && a.user == k[1] {
					fmt.Fprintf(&b, " %t@%d(changed %t)", a.add, a.version, a.changed)
				}
			}
			b.WriteString("; ")
		}
	}
	return b.String()
}
