package history_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/history"
	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// timeline is a channel's messages in a real Valkey (single layout, rings of 5) and PostgreSQL,
// and a history reader over both. flush plays the worker by hand, so that a test decides
// exactly which messages are where.
type timeline struct {
	c      valkey.Client
	keys   keyspace.Keys
	store  *store.Store
	db     *pg.Store
	reader *history.Reader
	tl     message.Timeline
	ids    []int64 // sent, in order
}

const ringSize = 5

func newTimeline(t *testing.T) *timeline {
	t.Helper()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	keys, _ := keyspace.New("")
	store, err := store.Open(c, store.Config{Layout: keys, RecentSize: ringSize,
		DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	pool := testenv.MigratedPool(t, testenv.Postgres(t), 4)
	reader, err := history.New(history.Config{Valkey: c, Layout: keys, DB: pg.NewHistory(pool)})
	if err != nil {
		t.Fatal(err)
	}
	return &timeline{c: c, keys: keys, store: store, db: pg.New(pool), reader: reader, tl: message.ChannelTimeline("c")}
}

func (h *timeline) send(t *testing.T, n int) {
	t.Helper()
	for range n {
		m := message.Message{OwnerID: "u", Username: "u", ChannelID: "c", Content: fmt.Sprintf("m%d", len(h.ids)), CreatedAt: "2026-12-07T10:00:00Z"}
		r, err := h.store.Enqueue(context.Background(), store.Message{OwnerID: "u", ChannelID: "c", Data: m.JSON()})
		if err != nil {
			t.Fatal(err)
		}
		h.ids = append(h.ids, r.CacheID)
	}
}

// flush writes the stream's oldest n entries to PostgreSQL; with trim it then removes them from
// the backlog index and the stream, as the workers do once their rows committed (ack, unindex,
// trim). Without trim they stay: written, not yet acked — the reads overlap there.
func (h *timeline) flush(t *testing.T, n int, trim bool) {
	t.Helper()
	ctx := context.Background()
	stream := h.keys.Stream(message.Public)
	xs, err := h.c.Do(ctx, h.c.B().Xrange().Key(stream).Start("-").End("+").Count(int64(n)).Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var recs []message.Record
	for _, x := range xs {
		r, err := message.DecodeEntry(message.KindMessage, message.DefaultChannel, x.ID, x.FieldValues)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if _, err := h.db.Persist(ctx, message.Public, recs); err != nil {
		t.Fatal(err)
	}
	if !trim {
		return
	}
	for _, r := range recs {
		for _, cmd := range []valkey.Completed{
			h.c.B().Zrem().Key(keyspace.BacklogIndex(stream, h.tl)).Member(r.StreamID).Build(),
			h.c.B().Xdel().Key(stream).Id(r.StreamID).Build(),
		} {
			if err := h.c.Do(ctx, cmd).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// scan reads the whole history backward and forward, limit messages a page, and returns the
// ids and contents each way found, checking that both agree and every page is in order.
func (h *timeline) scan(t *testing.T, limit int) (ids []int64, contents map[int64]string, sources []string) {
	t.Helper()
	ctx := context.Background()
	read := func(before bool) []int64 {
		var got []int64
		contents = map[int64]string{}
		cursor := int64(0)
		for range 1000 {
			p, err := h.reader.Page(ctx, history.Query{Timeline: h.tl, Before: before, Cursor: cursor, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			sources = append(sources, p.Source)
			var page []int64
			for _, b := range p.Messages {
				var e struct {
					CacheID int64 `json:"cache_id"`
					Data    struct {
						Content string `json:"content"`
					} `json:"data"`
				}
				if err := json.Unmarshal(b, &e); err != nil {
					t.Fatalf("a page holds %q: %v", b, err)
				}
				page = append(page, e.CacheID)
				contents[e.CacheID] = e.Data.Content
			}
			if !slices.IsSorted(page) || len(page) > limit {
				t.Fatalf("page %v (limit %d) is not in order or too long", page, limit)
			}
			if before {
				got = append(slices.Clone(page), got...)
			} else {
				got = append(got, page...)
			}
			if !p.HasMore || len(page) == 0 {
				return got
			}
			if before {
				cursor = page[0]
			} else {
				cursor = page[len(page)-1]
			}
		}
		t.Fatal("no end after 1000 pages")
		return nil
	}
	back := read(true)
	fwd := read(false)
	if !slices.Equal(back, fwd) {
		t.Fatalf("backward scan %v, forward scan %v", back, fwd)
	}
	return back, contents, sources
}

// TestMergeWithoutHoles: the history of a channel whose messages are in its ring (the newest
// 5), its backlog (not yet flushed), PostgreSQL (flushed and trimmed), and both at once (written,
// not yet acked) reads every message once, in order, whatever the page size — at the flushed
// watermark and across it.
func TestMergeWithoutHoles(t *testing.T) {
	t.Parallel()
	h := newTimeline(t)
	h.send(t, 30)
	h.flush(t, 15, true)  // 0–14: PostgreSQL only
	h.flush(t, 20, false) // 15–19: PostgreSQL and the stream (the watermark); 20–29 the backlog
	for _, limit := range []int{1, 4, 7, 31} {
		ids, contents, sources := h.scan(t, limit)
		if !slices.Equal(ids, h.ids) {
			t.Fatalf("limit %d: history %v, want %v", limit, ids, h.ids)
		}
		for i, id := range h.ids {
			if contents[id] != fmt.Sprintf("m%d", i) {
				t.Errorf("limit %d: message %d reads %q, want m%d", limit, id, contents[id], i)
			}
		}
		for _, want := range []string{"postgres", "mixed"} {
			if limit > 1 && limit < 31 && !slices.Contains(sources, want) {
				t.Errorf("limit %d: no page came from %s (sources %v)", limit, want, sources)
			}
		}
	}
}

// TestMergeHonoursDeletions: a message deleted while its create waits in the backlog, one
// deleted after its row was written (the deletion still pending in the stream), and one deleted
// in the ring are in no page; the others are all there.
func TestMergeHonoursDeletions(t *testing.T) {
	t.Parallel()
	h := newTimeline(t)
	h.send(t, 20)
	h.flush(t, 10, true)
	ctx := context.Background()
	gone := []int64{h.ids[3], h.ids[12], h.ids[18]} // in PostgreSQL; in the backlog; in the ring
	for _, id := range gone {
		if err := h.store.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "c", CacheID: id}); err != nil {
			t.Fatal(err)
		}
	}
	want := slices.DeleteFunc(slices.Clone(h.ids), func(id int64) bool { return slices.Contains(gone, id) })
	for _, limit := range []int{1, 3, 50} {
		if ids, _, _ := h.scan(t, limit); !slices.Equal(ids, want) {
			t.Fatalf("limit %d: history %v, want %v (without %v)", limit, ids, want, gone)
		}
	}
}

// TestMergeReadsEdits: a message edited after its row was flushed reads as edited (the edit
// waits in the backlog, the row still holds the create), and keeps its place.
func TestMergeReadsEdits(t *testing.T) {
	t.Parallel()
	h := newTimeline(t)
	h.send(t, 12)
	h.flush(t, 12, true)
	ctx := context.Background()
	id := h.ids[2]
	// As ingest does: the message's current version from history (here: PostgreSQL).
	rec, found, _, err := h.reader.Find(ctx, h.tl, id)
	if err != nil || !found {
		t.Fatalf("find %d: %v, %v", id, found, err)
	}
	m := rec.Message
	m.Content, m.CreatedAt, m.EditedAt = "edited", message.FormatTime(rec.CreatedAt), message.FormatTime(time.Now())
	if _, err := h.store.Edit(ctx, store.Edit{Kind: message.Public, CacheID: id, Message: m, Found: max(rec.Version, id)}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{1, 5, 50} {
		ids, contents, _ := h.scan(t, limit)
		if !slices.Equal(ids, h.ids) {
			t.Fatalf("limit %d: history %v, want %v", limit, ids, h.ids)
		}
		if contents[id] != "edited" {
			t.Errorf("limit %d: message %d reads %q after its edit, want \"edited\"", limit, id, contents[id])
		}
	}
	// Once the edit is flushed too, PostgreSQL answers it.
	h.flush(t, 1, true)
	if _, contents, _ := h.scan(t, 4); contents[id] != "edited" {
		t.Errorf("message %d reads %q after its edit was flushed, want \"edited\"", id, contents[id])
	}
}
