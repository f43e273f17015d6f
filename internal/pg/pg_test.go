package pg_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type testBundle struct {
	pool  *pgxpool.Pool
	store *pg.Store
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	pool := testenv.MigratedPool(t, testenv.Postgres(t), 8)
	return &testBundle{pool: pool, store: pg.New(pool)}
}

func rec(id int64, content string) message.Record {
	return message.Record{
		StreamID:  fmt.Sprintf("%d-0", 1700000000000+id),
		CacheID:   id,
		Message:   message.Message{OwnerID: "u1", RecipientID: "u2", ChannelID: message.DefaultChannel, Username: "User", Content: content, CreatedAt: "2026-11-25T10:00:00Z"},
		CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	}
}

func del(id int64) message.Record {
	return message.Record{StreamID: fmt.Sprintf("%d-1", 1700000000000+id), CacheID: id, Op: message.OpDelete}
}

func ids(t *testing.T, b *testBundle, table string) []int64 {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), "SELECT cache_id FROM "+table+" ORDER BY cache_id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []int64{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

func TestMigrateConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pg.Connect(ctx, testenv.Postgres(t), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Go(func() {
			n, err := pg.Migrate(ctx, pool, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Error(err)
			}
			applied[i] = n
		})
	}
	wg.Wait()
	ms, _ := pg.Migrations()
	total := 0
	for _, n := range applied {
		total += n
	}
	if total != len(ms) {
		t.Fatalf("applied %v migrations in all, want %d once", applied, len(ms))
	}
	if _, err := pool.Exec(ctx, "SELECT c.persisted_at, p.recipient_id, d.deleted_at FROM chat_messages c, private_messages p, deleted_messages d LIMIT 0"); err != nil {
		t.Fatalf("tables missing: %v", err)
	}
	// Migration 004 runs outside a transaction (CREATE INDEX CONCURRENTLY): four replicas
	// migrating at once must neither deadlock nor leave it invalid.
	var valid bool
	if err := pool.QueryRow(ctx, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'chat_messages_channel_cache_id'::regclass").Scan(&valid); err != nil || !valid {
		t.Fatalf("the channel index: valid %t, %v", valid, err)
	}
}

func TestPersistIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	batch := []message.Record{rec(1, "a"), rec(2, "b"), rec(2, "b"), rec(3, "c")}
	res, err := b.store.Persist(ctx, message.Public, batch)
	if err != nil || res.Inserted != 3 || len(res.Rejected) != 0 {
		t.Fatalf("first write: %+v, %v; want 3 inserted", res, err)
	}
	res, err = b.store.Persist(ctx, message.Public, batch)
	if err != nil || res.Inserted != 0 {
		t.Fatalf("redelivery: %+v, %v; want 0 inserted", res, err)
	}
	if got := ids(t, b, "chat_messages"); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("rows = %v, want 1 2 3", got)
	}
	var content, owner, stream string
	var created time.Time
	err = b.pool.QueryRow(ctx, "SELECT content, owner_id, stream_id, created_at FROM chat_messages WHERE cache_id = 2").Scan(&content, &owner, &stream, &created)
	if err != nil || content != "b" || owner != "u1" || stream != "1700000000002-0" || !created.Equal(rec(2, "").CreatedAt) {
		t.Fatalf("row 2 = %q %q %q %v (%v)", content, owner, stream, created, err)
	}
	if _, err := b.store.Persist(ctx, message.Private, []message.Record{rec(1, "private")}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "private_messages"); !slices.Equal(got, []int64{1}) {
		t.Fatalf("private rows = %v, want 1", got)
	}
}

func TestPersistIsolatesBadRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 64
	batch := make([]message.Record, n)
	for i := range batch {
		batch[i] = rec(int64(i+1), "fine")
	}
	batch[9].Message.Content = "nul \x00 inside"          // 22021: Postgres text cannot hold NUL
	batch[40].Message.Content = strings.Repeat("x", 5000) // 23514: CHECK on the length
	batch[41].Message.Username = strings.Repeat("u", 65)  // 23514
	res, err := b.store.Persist(context.Background(), message.Public, batch)
	if err != nil {
		t.Fatal(err)
	}
	var bad []int
	for _, r := range res.Rejected {
		bad = append(bad, r.Index)
		if !pg.Permanent(r.Err) {
			t.Errorf("rejection %d is not permanent: %v", r.Index, r.Err)
		}
	}
	if !slices.Equal(bad, []int{9, 40, 41}) {
		t.Fatalf("rejected %v, want [9 40 41]", bad)
	}
	if res.Inserted != n-3 {
		t.Fatalf("inserted %d, want %d", res.Inserted, n-3)
	}
	// k bad rows cost about k·log2(n) round trips, not n.
	limit := 1 + 2*3*int(math.Log2(n))
	if res.RoundTrips > limit {
		t.Fatalf("isolation took %d round trips, want at most %d", res.RoundTrips, limit)
	}
	t.Logf("3 bad rows in %d: %d round trips", n, res.RoundTrips)
}

func TestDeleteEitherOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	// Insert, then delete.
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{rec(1, "a"), rec(2, "b")}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{del(1)}); err != nil {
		t.Fatal(err)
	}
	// Delete, then insert (the deletion met first), and both in one batch.
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{del(3)}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{rec(3, "c"), rec(4, "d"), del(4), rec(5, "e")}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "chat_messages"); !slices.Equal(got, []int64{2, 5}) {
		t.Fatalf("rows = %v, want 2 5", got)
	}
	// Redelivered deletions are harmless.
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{del(1), del(3)}); err != nil {
		t.Fatal(err)
	}
	// A private deletion touches private messages only.
	if _, err := b.store.Persist(ctx, message.Private, []message.Record{rec(2, "p"), del(2)}); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, b, "private_messages"); len(got) != 0 {
		t.Fatalf("private rows = %v, want none", got)
	}
	if got := ids(t, b, "chat_messages"); !slices.Equal(got, []int64{2, 5}) {
		t.Fatalf("public rows after a private delete = %v, want 2 5", got)
	}
}

// TestDeleteRacesInsert: an insert that starts while a deletion of the same id is uncommitted
// must wait for it and then skip the row, or the deleted message would remain.
// TestDeleteRacesInsert: a write that starts while a deletion of one of its ids is uncommitted
// waits for it and skips the row, whether the batch goes by INSERT or by COPY.
func TestDeleteRacesInsert(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, pg.CopyMin} {
		t.Run(fmt.Sprintf("batch of %d", n), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			ctx := context.Background()
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "LOCK TABLE chat_messages IN SHARE ROW EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO deleted_messages (kind, cache_id, stream_id) VALUES ('message', 7, '1-1')"); err != nil {
				t.Fatal(err)
			}
			batch := make([]message.Record, n)
			want := []int64{}
			for i := range batch {
				batch[i] = rec(int64(7+i), "raced")
				if i > 0 {
					want = append(want, int64(7+i))
				}
			}
			done := make(chan error, 1)
			go func() {
				_, err := b.store.Persist(ctx, message.Public, batch)
				done <- err
			}()
			select {
			case err := <-done:
				t.Fatalf("the write did not wait for the uncommitted deletion (err %v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if got := ids(t, b, "chat_messages"); !slices.Equal(got, want) {
				t.Fatalf("rows = %v, want %v: the deleted message was written", got, want)
			}
		})
	}
}

// TestIDReused: a record whose id is stored with other content is an id given twice (a Valkey
// that lost its counter, a failover to a replica behind it), not a redelivery: it is rejected
// with ErrIDReused, on the INSERT and the COPY path, within a batch and across batches, while
// real redeliveries still pass as no-ops.
func TestIDReused(t *testing.T) {
	t.Parallel()
	for _, kind := range message.Kinds {
		for _, n := range []int{4, pg.CopyMin} {
			t.Run(fmt.Sprintf("%s, batch of %d", kind, n), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				ctx := context.Background()
				first := make([]message.Record, n)
				for i := range first {
					first[i] = rec(int64(i+1), "first")
				}
				first[n-1] = rec(2, "another message") // id 2 again, other content, same batch
				res, err := b.store.Persist(ctx, kind, first)
				if err != nil || res.Inserted != int64(n-1) || len(res.Rejected) != 1 || res.Rejected[0].Index != n-1 || !errors.Is(res.Rejected[0].Err, pg.ErrIDReused) {
					t.Fatalf("first write: %+v, %v; want %d inserted and index %d rejected as reused", res, err, n-1, n-1)
				}
				again := append([]message.Record{rec(1, "first"), rec(3, "a third message")}, first[3:n-1]...)
				res, err = b.store.Persist(ctx, kind, again)
				if err != nil || res.Inserted != 0 || len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || !errors.Is(res.Rejected[0].Err, pg.ErrIDReused) {
					t.Fatalf("second write: %+v, %v; want nothing inserted and only index 1 (id 3, other content) rejected", res, err)
				}
			})
		}
	}
}

// TestPersistCopyAndInsertAgree: a batch of CopyMin or more goes by COPY, a smaller one by
// INSERT; both skip tombstoned ids, write a repeated id once (its first occurrence), write
// nothing on redelivery, and report the same counts, for both tables.
func TestPersistCopyAndInsertAgree(t *testing.T) {
	t.Parallel()
	for _, kind := range message.Kinds {
		for _, n := range []int{4, pg.CopyMin, 500} {
			t.Run(fmt.Sprintf("%s, batch of %d", kind, n), func(t *testing.T) {
				t.Parallel()
				b := setup(t)
				ctx := context.Background()
				if _, err := b.store.Persist(ctx, kind, []message.Record{del(2)}); err != nil {
					t.Fatal(err)
				}
				batch := make([]message.Record, n)
				for i := range batch {
					batch[i] = rec(int64(i+1), "first")
				}
				batch[n-1] = rec(3, "first") // id 3 delivered twice in one batch: written once
				res, err := b.store.Persist(ctx, kind, batch)
				if err != nil || res.Inserted != int64(n-2) || len(res.Rejected) != 0 {
					t.Fatalf("first write: %+v, %v; want %d inserted", res, err, n-2)
				}
				table := map[message.Kind]string{message.Public: "chat_messages", message.Private: "private_messages"}[kind]
				var want []int64
				for i := 1; i < n; i++ {
					if i != 2 {
						want = append(want, int64(i))
					}
				}
				if got := ids(t, b, table); !slices.Equal(got, want) {
					t.Fatalf("rows = %v, want %v", got, want)
				}
				var content, recipient string
				if kind == message.Private {
					_ = b.pool.QueryRow(ctx, "SELECT content, recipient_id FROM private_messages WHERE cache_id = 3").Scan(&content, &recipient)
				} else {
					_ = b.pool.QueryRow(ctx, "SELECT content, 'u2' FROM chat_messages WHERE cache_id = 3").Scan(&content, &recipient)
				}
				if content != "first" || recipient != "u2" {
					t.Fatalf("row 3 = %q to %q, want the first occurrence", content, recipient)
				}
				res, err = b.store.Persist(ctx, kind, batch)
				if err != nil || res.Inserted != 0 || len(res.Rejected) != 0 {
					t.Fatalf("redelivery: %+v, %v; want nothing inserted", res, err)
				}
				if got := ids(t, b, table); !slices.Equal(got, want) {
					t.Fatalf("rows after redelivery = %v, want %v", got, want)
				}
			})
		}
	}
}

func TestTransientErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pg.Connect(ctx, "postgres://nobody@127.0.0.1:1/none?connect_timeout=1", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = pg.New(pool).Persist(ctx, message.Public, []message.Record{rec(1, "a")})
	if err == nil || pg.Permanent(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if c := pg.Class(err); c != "network" && c != "08" {
		t.Errorf("class = %q, want network", c)
	}
	if c := pg.Class(context.DeadlineExceeded); c != "timeout" {
		t.Errorf("class of a deadline = %q, want timeout", c)
	}
	if pg.Permanent(errors.New("x")) {
		t.Error("a plain error is permanent")
	}
}

func TestConnectHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := pg.Connect(context.Background(), "postgres://u:hunter2@host:notaport/db", 1)
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v, want an error without the password", err)
	}
	if r := pg.Redact("postgres://u:hunter2@h:5432/db"); strings.Contains(r, "hunter2") {
		t.Fatalf("Redact = %q", r)
	}
}

// TestLimitedRole: a role with only the grants of grants.sql can write, delete and nothing more.
func TestLimitedRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	pool := limitedRole(t, b, "grants.sql", "chatpipe_writer")
	store := pg.New(pool)
	big := make([]message.Record, pg.CopyMin) // written by COPY
	for i := range big {
		big[i] = rec(int64(100+i), "copied")
	}
	for _, kind := range message.Kinds {
		if _, err := store.Persist(ctx, kind, []message.Record{rec(1, "a"), rec(2, "b"), del(2)}); err != nil {
			t.Fatalf("%s as the limited role: %v", kind, err)
		}
		if res, err := store.Persist(ctx, kind, big); err != nil || res.Inserted != int64(len(big)) {
			t.Fatalf("%s batch of %d as the limited role: %+v, %v", kind, len(big), res, err)
		}
	}
	if got := ids(t, b, "chat_messages"); len(got) != 1+pg.CopyMin || got[0] != 1 {
		t.Fatalf("rows = %v, want 1 and the copied batch", got)
	}
	if _, err := pool.Exec(ctx, "DROP TABLE chat_messages"); err == nil {
		t.Fatal("the limited role could drop a table")
	}
	if _, err := pool.Exec(ctx, "UPDATE chat_messages SET content = 'x'"); err == nil {
		t.Fatal("the limited role could rewrite messages")
	}
}

// limitedRole creates a login role with only the grants of file (its role name, placeholder,
// replaced) and returns a pool connected as it.
func limitedRole(t *testing.T, b *testBundle, file, placeholder string) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	grants, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	role := fmt.Sprintf("role_%d", time.Now().UnixNano())
	var db string
	_ = b.pool.QueryRow(ctx, "SELECT current_database()").Scan(&db)
	for _, stmt := range []string{
		"CREATE ROLE " + role + " LOGIN PASSWORD 'w-secret'",
		"GRANT CONNECT ON DATABASE " + db + " TO " + role,
		strings.ReplaceAll(string(grants), placeholder, role),
	} {
		if _, err := b.pool.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	t.Cleanup(func() {
		_, _ = b.pool.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = b.pool.Exec(context.Background(), "DROP ROLE "+role)
	})
	cfg := b.pool.Config().ConnConfig
	dsn := fmt.Sprintf("postgres://%s:w-secret@%s:%d/%s?sslmode=disable", role, cfg.Host, cfg.Port, db)
	pool, err := pg.ConnectAs(ctx, dsn, "chatpipe-test", 2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestReaderRole: ingest's role with only the grants of grants_reader.sql reads history pages,
// of channels (each only its own messages) and private, both ways, and a private message's
// users, and can write nothing.
func TestReaderRole(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, kind := range message.Kinds {
		recs := []message.Record{rec(1, "a"), rec(2, "b"), rec(3, "c"), rec(4, "d"), rec(5, "e"), rec(6, "f")}
		recs[3].Message.OwnerID, recs[3].Message.RecipientID = "u3", "u3" // a self-DM
		recs[4].Message.ChannelID, recs[5].Message.ChannelID = "Org:Room~1", "Org:Room~1"
		if kind == message.Private {
			recs = recs[:4]
		}
		if _, err := b.store.Persist(ctx, kind, recs); err != nil {
			t.Fatal(err)
		}
	}
	h := pg.NewHistory(limitedRole(t, b, "grants_reader.sql", "chatpipe_reader"))
	cases := []struct {
		q    pg.PageQuery
		want []int64
	}{
		{pg.PageQuery{Timeline: message.ChannelTimeline(message.DefaultChannel), Before: true, Limit: 2}, []int64{4, 3}},
		{pg.PageQuery{Timeline: message.ChannelTimeline(message.DefaultChannel), Before: true, Cursor: 3, Limit: 5, Exclude: []int64{1}}, []int64{2}},
		{pg.PageQuery{Timeline: message.ChannelTimeline(message.DefaultChannel), Cursor: 1, Limit: 2}, []int64{2, 3}},
		{pg.PageQuery{Timeline: message.ChannelTimeline("Org:Room~1"), Before: true, Limit: 10}, []int64{6, 5}},
		{pg.PageQuery{Timeline: message.ChannelTimeline("Org:Room~1"), Cursor: 5, Limit: 10}, []int64{6}},
		{pg.PageQuery{Timeline: message.ChannelTimeline("org:room~1"), Limit: 10}, nil}, // case-sensitive
		{pg.PageQuery{Timeline: message.PrivateTimeline("u2"), Before: true, Limit: 10}, []int64{3, 2, 1}},
		{pg.PageQuery{Timeline: message.PrivateTimeline("u3"), Limit: 10}, []int64{4}}, // found by both seeks, once
		{pg.PageQuery{Timeline: message.PrivateTimeline("u1"), Cursor: 1, Limit: 1}, []int64{2}},
		{pg.PageQuery{Timeline: message.PrivateTimeline("nobody"), Limit: 10}, nil},
	}
	for _, c := range cases {
		recs, err := h.Page(ctx, c.q)
		if err != nil {
			t.Fatalf("%+v: %v", c.q, err)
		}
		var got []int64
		for _, r := range recs {
			got = append(got, r.CacheID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%+v: %v, want %v", c.q, got, c.want)
		}
	}
	if r, ok, err := h.One(ctx, message.Private, 4); err != nil || !ok || r.Message.OwnerID != "u3" || r.Message.RecipientID != "u3" || r.Version != 4 {
		t.Errorf("private message 4: %+v %t %v", r, ok, err)
	}
	if r, ok, err := h.One(ctx, message.Public, 5); err != nil || !ok || r.Message.ChannelID != "Org:Room~1" {
		t.Errorf("channel of 5: %+v %t %v", r, ok, err)
	}
	if _, ok, err := h.One(ctx, message.Private, 99); err != nil || ok {
		t.Errorf("participants of an unknown id: %t %v", ok, err)
	}
	if _, err := pg.New(limitedRole(t, b, "grants_reader.sql", "chatpipe_reader")).Persist(ctx, message.Public, []message.Record{rec(9, "x")}); err == nil {
		t.Error("the reader role could write")
	}
}

func edit(id, version int64, content string) message.Record {
	r := rec(id, content)
	r.StreamID = fmt.Sprintf("%d-%d", 1700000000000+version, 2)
	r.Op, r.Version = message.OpEdit, version
	r.EditedAt = time.Date(2026, 11, 25, 11, 0, 0, int(version)*1000, time.UTC)
	r.Message.EditedAt = message.FormatTime(r.EditedAt)
	return r
}

// TestEditsInAnyOrder: whatever order a message's create, edits and deletion reach PostgreSQL
// in — one batch or several, as two workers would commit them — the row ends at the highest
// version, or absent once deleted; the create never overwrites an edit written before it, and
// neither is rejected as an id given twice.
func TestEditsInAnyOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	h := pg.NewHistory(b.pool)
	const c, e1, e2, d = "c", "e1", "e2", "d"
	cases := []struct {
		batches [][]string
		want    string // the content at the end; "" for no row
	}{
		{[][]string{{c}, {e1}, {e2}}, e2},
		{[][]string{{e2}, {c}, {e1}}, e2},
		{[][]string{{e1}, {e2}, {c}}, e2},
		{[][]string{{c, e1, e2}}, e2},
		{[][]string{{e2, e1, c}}, e2},
		{[][]string{{c, e2}, {e2, e1}, {c}}, e2},
		{[][]string{{c}, {e1}, {d}, {e2}}, ""},
		{[][]string{{d}, {e1}}, ""},
		{[][]string{{e1}, {d}, {c}}, ""},
		{[][]string{{c, e1, d, e2}}, ""},
		{[][]string{{c}, {e1}}, e1},
	}
	for i, tc := range cases {
		for _, kind := range message.Kinds {
			id := int64(100*i + 10 + int(kind))
			for _, batch := range tc.batches {
				var recs []message.Record
				for _, op := range batch {
					switch op {
					case c:
						recs = append(recs, rec(id, "created"))
					case e1:
						recs = append(recs, edit(id, id+1000, "first edit"))
					case e2:
						recs = append(recs, edit(id, id+2000, "second edit"))
					case d:
						recs = append(recs, del(id))
					}
				}
				res, err := b.store.Persist(ctx, kind, recs)
				if err != nil || len(res.Rejected) > 0 {
					t.Fatalf("%v %v, batch %v: %v, rejected %v", kind, tc.batches, batch, err, res.Rejected)
				}
			}
			got, ok, err := h.One(ctx, kind, id)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{e1: "first edit", e2: "second edit"}[tc.want]
			wantVersion := map[string]int64{e1: id + 1000, e2: id + 2000}[tc.want]
			switch {
			case tc.want == "" && ok:
				t.Errorf("%v %v: row %+v, want none (deleted)", kind, tc.batches, got)
			case tc.want != "" && (!ok || got.Message.Content != want || got.Version != wantVersion || got.EditedAt.IsZero()):
				t.Errorf("%v %v: row %+v (found %t), want %q at version %d with edited_at", kind, tc.batches, got, ok, want, wantVersion)
			}
		}
	}
	// A bad edit is refused alone; the good one in its batch is written.
	id := int64(9001)
	if _, err := b.store.Persist(ctx, message.Public, []message.Record{rec(id, "created")}); err != nil {
		t.Fatal(err)
	}
	bad := edit(id+1, id+1001, "")
	res, err := b.store.Persist(ctx, message.Public, []message.Record{edit(id, id+1000, "fixed"), bad})
	if err != nil || len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || res.Edited != 1 {
		t.Fatalf("a batch with a bad edit: %+v, %v; want the second rejected, one edited", res, err)
	}
	if got, _, _ := h.One(ctx, message.Public, id); got.Message.Content != "fixed" {
		t.Errorf("content %q, want fixed", got.Message.Content)
	}
}
