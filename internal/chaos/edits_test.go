package chaos_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestEditsRacing proves edits as a user would see them, on the real binaries:
// 500 messages in 20 channels, each edited 5 times by two clients racing (one sends its edits
// 1, 3 and 5, the other 2 and 4, at once), while the one worker is stopped and restarted, and a
// firehose tail follows from the start. Afterwards PostgreSQL, every channel's history (both
// directions) and ring show each message exactly as its highest version answered 200, with
// edited_at; the tail sent one edit event per edit answered 200, in version order per message.
func TestEditsRacing(t *testing.T) {
	testenv.Slow(t, "a run of the real binaries")
	v := testenv.StartValkey(t)
	d := newDeployment(t, "VALKEY_ADDR="+v.Addr)
	dsn := d.dsn
	_, w, base := d.pair(t, []string{"RECENT_SIZE=50", "DATABASE_URL=" + dsn}, []string{"RECENT_SIZE=50", "FLUSH_BATCH_SIZE=50"})
	tailed := newTailClient(t, base+"/v1/channels/stream?all=true")
	defer tailed.stop()

	l := newLedger()
	channels := newChannelSet(20)
	c := &client{name: "sender", base: base, http: keepAlive(5 * time.Second), l: l, channels: channels}
	for i := range 500 {
		c.send("message", fmt.Sprintf("u%d", i%10), fmt.Sprintf("e%d", i), 50)
	}
	if len(l.accepted["message"]) != 500 {
		t.Fatalf("%d of 500 messages accepted (%v rejected)", len(l.accepted["message"]), l.rejected)
	}
	msgs := make([]edited, 0, 500)
	for _, id := range sortedIDs(l.accepted["message"]) {
		msgs = append(msgs, edited{"message", id, l.accepted["message"][id]})
	}
	var wg sync.WaitGroup
	for k, rounds := range [][]int{{1, 3, 5}, {2, 4}} {
		editor := *c
		editor.name = fmt.Sprintf("editor %d", k)
		wg.Go(func() {
			for _, m := range msgs {
				for _, r := range rounds {
					if status := editor.edit(m, fmt.Sprintf("chaos %s edit %d", m.token, r)); status != http.StatusOK {
						t.Errorf("edit %d of %d: %d", r, m.id, status)
					}
				}
			}
		})
	}
	time.Sleep(time.Second)
	w.stop() // the worker stops with edits flowing; a backlog of creates and edits builds
	time.Sleep(2 * time.Second)
	w.start(t)
	wg.Wait()
	total := 0
	for _, m := range msgs {
		total += len(l.answered[m])
	}
	if total != 2500 {
		t.Fatalf("%d edits answered 200, want 2500", total)
	}
	waitDrained(t, v.Client(t))

	// PostgreSQL: the content of the highest version answered, that version, an edit time.
	rows := publicRows(t, dsn)
	bad := 0
	for _, m := range msgs {
		want := l.edits[m]
		if got := rows[m.id]; got.content != want.content || got.version != want.version || !got.edited {
			if bad++; bad < 5 {
				t.Errorf("PostgreSQL holds %d as %+v, want %q at version %d, edited", m.id, got, want.content, want.version)
			}
		}
	}

	// Every channel's history, both ways, and its ring.
	byChannel := l.byChannel()
	for _, ch := range channels.list() {
		path := "/v1/channels/" + ch + "/messages"
		for _, backward := range []bool{true, false} {
			got := testenv.ScanHistory(t, http.DefaultClient, base, path+"/history", backward, 37)
			if len(got) != len(byChannel[ch]) {
				t.Errorf("%s history (backward %t): %d messages, want %d", ch, backward, len(got), len(byChannel[ch]))
			}
			for _, hm := range got {
				m := edited{"message", hm.CacheID, l.accepted["message"][hm.CacheID]}
				if want := l.edits[m]; hm.Data.Content != want.content || hm.Version != want.version || hm.Data.EditedAt == "" {
					if bad++; bad < 10 {
						t.Errorf("%s history shows %+v, want %q at version %d with edited_at", ch, hm, want.content, want.version)
					}
				}
			}
		}
		ring := testenv.ScanRecent(t, http.DefaultClient, base+path+"/recent")
		ids := byChannel[ch]
		if want := ids[max(0, len(ids)-50):]; len(ring) != len(want) {
			t.Errorf("%s ring holds %d messages, want %d", ch, len(ring), len(want))
		}
		for i, hm := range ring {
			m := edited{"message", hm.CacheID, l.accepted["message"][hm.CacheID]}
			if want := l.edits[m]; hm.CacheID != ids[max(0, len(ids)-50)+i] || hm.Data.Content != want.content || hm.Version != want.version {
				if bad++; bad < 15 {
					t.Errorf("%s ring entry %d is %+v, want %d as %q at version %d", ch, i, hm, ids[max(0, len(ids)-50)+i], want.content, want.version)
				}
			}
		}
	}

	// The tail: one edit event per answered edit, in version order per message.
	testenv.WaitFor(t, "the tail's events", 20*time.Second, func() bool { return tailed.count() >= 500+2500 })
	tailed.mu.Lock()
	events := map[int64][]int64{}
	for _, ev := range tailed.evs {
		if ev.Type != "edit" {
			continue
		}
		var hm testenv.HistoryMessage
		if err := json.Unmarshal([]byte(ev.Data), &hm); err != nil {
			t.Fatalf("edit event %q: %v", ev.Data, err)
		}
		events[hm.CacheID] = append(events[hm.CacheID], hm.Version)
	}
	tailed.mu.Unlock()
	for _, m := range msgs {
		want := slices.Sorted(slices.Values(l.answered[m]))
		if got := events[m.id]; !slices.Equal(got, want) {
			if bad++; bad < 20 {
				t.Errorf("the tail's edits of %d: versions %v, want %v (the edits answered 200, in order)", m.id, got, want)
			}
		}
	}
	racing := l.editedByMany()
	t.Logf("%d messages in %d channels, %d edits answered 200 (%d messages edited by both clients), %d tail events, %d mismatches",
		len(msgs), len(byChannel), total, racing, tailed.count(), bad)
	if !strings.Contains(w.logs.String(), "consuming") {
		t.Error("the worker never ran")
	}
}

// storedRow is a public message's row, as the checks read it.
type storedRow struct {
	content string
	version int64
	edited  bool
}

// publicRows reads every public message's row by cache id.
func publicRows(t *testing.T, dsn string) map[int64]storedRow {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	r, err := conn.Query(t.Context(), "SELECT cache_id, content, version, edited_at IS NOT NULL FROM chat_messages")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows := map[int64]storedRow{}
	for r.Next() {
		var id int64
		var x storedRow
		if err := r.Scan(&id, &x.content, &x.version, &x.edited); err != nil {
			t.Fatal(err)
		}
		rows[id] = x
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
