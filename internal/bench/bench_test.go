//go:build bench

package bench_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/pg"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type row struct {
	Stage  string  `json:"stage"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Limit  string  `json:"limit,omitempty"`
	Ratio  float64 `json:"ratio,omitempty"`
	Detail string  `json:"detail,omitempty"`
}

var quick = os.Getenv("BENCH_QUICK") != ""

func sized(full, q int) int {
	if quick {
		return q
	}
	return full
}

func msg(i int) lua.Message {
	m := message.Message{OwnerID: fmt.Sprintf("user%d", i%1000), Username: "User", Content: "a typical chat message of some fifty bytes or so....", CreatedAt: "2026-11-25T10:00:00Z"}
	return lua.Message{Kind: keyspace.Public, OwnerID: m.OwnerID, Data: m.JSON()}
}

func newScripts(t *testing.T, c valkey.Client) *lua.Scripts {
	s, err := lua.New(c, lua.Config{BacklogCap: 1 << 40, DefaultRate: lua.RateLimit{Limit: lua.MaxLimit, WindowSeconds: 1, Algorithm: lua.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the rate per second.
func parallel(n, workers int, f func(i int)) float64 {
	var next atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				f(i)
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

func TestBench(t *testing.T) {
	ctx := context.Background()
	var rows []row
	add := func(r row) {
		rows = append(rows, r)
		t.Logf("%-58s %12.0f %s %s", r.Stage, r.Value, r.Unit, r.Detail)
	}

	// 1. Limits: the enqueue script on Valkey, unpipelined and pipelined.
	v := testenv.StartValkey(t)
	c := v.Client(t)
	scripts := newScripts(t, c)
	n := sized(200_000, 40_000)
	one := parallel(n/4, 1, func(i int) { _, _ = scripts.Enqueue(ctx, msg(i)) })
	add(row{Stage: "limit: EVALSHA enqueue, one caller, one at a time", Value: one, Unit: "msgs/s"})
	// 64 concurrent callers: valkey-go pipelines concurrent calls on its connection by itself,
	// so this is the server's script rate, the ceiling of concurrent single requests.
	unpiped := parallel(n, 64, func(i int) { _, _ = scripts.Enqueue(ctx, msg(i)) })
	add(row{Stage: "limit: EVALSHA enqueue, 64 concurrent callers", Value: unpiped, Unit: "msgs/s"})
	batch := make([]lua.Message, 500)
	for i := range batch {
		batch[i] = msg(i)
	}
	piped := parallel(n/500, 2, func(int) { scripts.EnqueueMany(ctx, keyspace.Public, batch) }) * 500
	add(row{Stage: "limit: EVALSHA enqueue, pipelined 500, 2 callers", Value: piped, Unit: "msgs/s"})

	// 2. Limits: PostgreSQL COPY in batches of 500, and single-row INSERTs.
	dsn := testenv.Postgres(t)
	pool, err := pg.Connect(ctx, dsn, 16)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pg.Migrate(ctx, pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE copy_target (LIKE chat_messages INCLUDING ALL); CREATE TABLE insert_target (LIKE chat_messages INCLUDING ALL)"); err != nil {
		t.Fatal(err)
	}
	cols := []string{"cache_id", "owner_id", "username", "content", "created_at", "stream_id"}
	now := time.Now()
	copyRate := parallel(n/500, 1, func(b int) {
		_, err := pool.CopyFrom(ctx, pgx.Identifier{"copy_target"}, cols, pgx.CopyFromSlice(500, func(i int) ([]any, error) {
			id := int64(b*500 + i + 1)
			return []any{id, "user", "User", "a typical chat message of some fifty bytes or so....", now, "1-1"}, nil
		}))
		if err != nil {
			t.Error(err)
		}
	}) * 500
	add(row{Stage: "limit: PostgreSQL COPY, batches of 500", Value: copyRate, Unit: "rows/s"})
	single := parallel(sized(20_000, 5_000), 8, func(i int) {
		_, _ = pool.Exec(ctx, "INSERT INTO insert_target (cache_id, owner_id, username, content, created_at, stream_id) VALUES ($1, 'u', 'U', 'a typical chat message', now(), '1-1')", i+1)
	})
	add(row{Stage: "limit: single-row INSERT, 8 connections", Value: single, Unit: "rows/s", Detail: "what writing straight to PostgreSQL gives"})

	// 3. Limit: a bare XREADGROUP + COPY + XACK loop over a preloaded stream.
	entries := sized(1_000_000, 100_000)
	bareStream := preload(t, c, "bare:stream", entries)
	bare := bareLoop(t, c, pool, bareStream, entries)
	add(row{Stage: fmt.Sprintf("limit: bare XREADGROUP+COPY+XACK, %d entries", entries), Value: bare, Unit: "rows/s"})

	// 4. Flush: the real worker, 1 and 3 replicas, on a preloaded stream of the same size.
	dir := testenv.Build(t, "", "../../cmd/flushworker", "../../cmd/ingest")
	var flush1 float64
	for _, replicas := range []int{1, 3} {
		vf := testenv.StartValkey(t)
		cf := vf.Client(t)
		dsnF := testenv.Postgres(t)
		preload(t, cf, "chatpipe:flush:message", entries)
		rate, rss := flushRun(t, dir, vf.Addr, dsnF, replicas, entries)
		r := row{Stage: fmt.Sprintf("flush: %d replica(s), %d-entry backlog", replicas, entries), Value: rate, Unit: "rows/s",
			Limit: "bare loop", Ratio: rate / bare, Detail: fmt.Sprintf("peak RSS %.0f MiB per worker", rss/(1<<20))}
		if replicas == 1 {
			flush1 = rate
		} else {
			r.Detail += fmt.Sprintf(", %.2f× one replica", rate/flush1)
		}
		add(r)
	}

	// 5. Ingest over HTTP: single messages at 8 and 64 clients, the batch endpoint.
	vi := testenv.StartValkey(t)
	addr := testenv.FreeAddr(t)
	ing := exec.Command(filepath.Join(dir, "ingest"))
	ing.Env = append(os.Environ(), "VALKEY_ADDR="+vi.Addr, "INGEST_ADDR="+addr, "RATE_LIMIT=1000000", "RATE_WINDOW=1s", "INGEST_BACKLOG_CAP=1000000000", "LOG_LEVEL=error")
	if err := ing.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ing.Process.Kill(); _ = ing.Wait() }()
	testenv.WaitReady(t, "http://"+addr+"/readyz", 20*time.Second)
	body := `{"owner_id":"u%d","username":"U","content":"a typical chat message of some fifty bytes or so...."}`
	for _, clients := range []int{8, 64} {
		rate, lat := httpLoad(t, "http://"+addr+"/v1/messages", clients, sized(100_000, 20_000), func(i int) string { return fmt.Sprintf(body, i%1000) }, 1)
		add(row{Stage: fmt.Sprintf("ingest: single-message endpoint, %d clients", clients), Value: rate, Unit: "msgs/s",
			Limit: "EVALSHA, 64 callers", Ratio: rate / unpiped, Detail: lat})
	}
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, body, i)
	}
	sb.WriteString("]}")
	batchBody := sb.String()
	rate, lat := httpLoad(t, "http://"+addr+"/v1/messages/batch", 8, sized(600, 120), func(int) string { return batchBody }, 500)
	add(row{Stage: "ingest: batch endpoint (500 per request), 8 clients", Value: rate, Unit: "msgs/s",
		Limit: "EVALSHA pipelined", Ratio: rate / piped, Detail: lat})

	writeResults(t, rows)
}

// preload fills a stream with n ring-entry payloads, pipelined, and returns its name.
func preload(t *testing.T, c valkey.Client, stream string, n int) string {
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		cmds := make(valkey.Commands, 0, 1000)
		for j := i; j < min(n, i+1000); j++ {
			m := message.Message{OwnerID: fmt.Sprintf("user%d", j%1000), Username: "User", Content: "a typical chat message of some fifty bytes or so....", CreatedAt: "2026-11-25T10:00:00Z"}
			payload := fmt.Sprintf(`{"cache_id":%d,"data":%s}`, j+1, m.JSON())
			cmds = append(cmds, c.B().Xadd().Key(stream).Id("*").FieldValue().FieldValue("cache_id", strconv.Itoa(j+1)).FieldValue("kind", "message").FieldValue("payload", payload).Build())
		}
		for _, r := range c.DoMulti(ctx, cmds...) {
			if err := r.Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return stream
}

// bareLoop is the reference: read 500, decode, COPY, ack; nothing else.
func bareLoop(t *testing.T, c valkey.Client, pool *pgxpool.Pool, stream string, n int) float64 {
	ctx := context.Background()
	if err := c.Do(ctx, c.B().XgroupCreate().Key(stream).Group("bare").Id("0").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "CREATE TABLE bare_target (LIKE chat_messages INCLUDING ALL)"); err != nil {
		t.Fatal(err)
	}
	cols := []string{"cache_id", "owner_id", "username", "content", "created_at", "stream_id"}
	start := time.Now()
	done := 0
	for done < n {
		res, err := c.Do(ctx, c.B().Xreadgroup().Group("bare", "c").Count(500).Streams().Key(stream).Id(">").Build()).AsXRead()
		if err != nil {
			t.Fatal(err)
		}
		xs := res[stream]
		rows := make([][]any, 0, len(xs))
		ids := make([]string, 0, len(xs))
		for _, x := range xs {
			r, err := message.DecodeEntry("message", x.ID, x.FieldValues)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, []any{r.CacheID, r.Message.OwnerID, r.Message.Username, r.Message.Content, r.CreatedAt, r.StreamID})
			ids = append(ids, x.ID)
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"bare_target"}, cols, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
		if err := c.Do(ctx, c.B().Xack().Key(stream).Group("bare").Id(ids...).Build()).Error(); err != nil {
			t.Fatal(err)
		}
		done += len(xs)
	}
	return float64(n) / time.Since(start).Seconds()
}

// flushRun starts replicas workers on a preloaded stream and times the drain into PostgreSQL.
func flushRun(t *testing.T, dir, valkeyAddr, dsn string, replicas, n int) (rate, peakRSS float64) {
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var cmds []*exec.Cmd
	start := time.Now()
	for i := range replicas {
		cmd := exec.Command(filepath.Join(dir, "flushworker"))
		cmd.Env = append(os.Environ(), "VALKEY_ADDR="+valkeyAddr, "DATABASE_URL="+dsn, "FLUSH_CONSUMER="+fmt.Sprintf("b%d", i),
			"FLUSH_METRICS_ADDR=127.0.0.1:0", "FLUSH_MIGRATE=false", "LOG_LEVEL=error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	defer func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
	}()
	deadline := time.Now().Add(10 * time.Minute)
	for {
		var rows int
		_ = conn.QueryRow(context.Background(), "SELECT count(*) FROM chat_messages").Scan(&rows)
		for _, cmd := range cmds {
			peakRSS = max(peakRSS, hwm(cmd.Process.Pid))
		}
		if rows >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flush with %d replicas: %d of %d rows after 10 minutes", replicas, rows, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return float64(n) / time.Since(start).Seconds(), peakRSS
}

// hwm reads a process' peak resident set size (VmHWM) in bytes.
func hwm(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb * 1024
		}
	}
	return 0
}

// httpLoad sends n requests from clients goroutines (closed loop) and returns messages per
// second (perRequest messages each) and the latency percentiles.
func httpLoad(t *testing.T, url string, clients, n int, body func(int) string, perRequest int) (float64, string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	lat := make([]time.Duration, n)
	rate := parallel(n, clients, func(i int) {
		start := time.Now()
		res, err := client.Post(url, "application/json", strings.NewReader(body(i)))
		if err != nil {
			t.Error(err)
			return
		}
		res.Body.Close()
		lat[i] = time.Since(start)
	})
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	p := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	return rate * float64(perRequest), fmt.Sprintf("p50 %s, p99 %s, p99.9 %s", p(0.5).Round(10*time.Microsecond), p(0.99).Round(10*time.Microsecond), p(0.999).Round(10*time.Microsecond))
}

func writeResults(t *testing.T, rows []row) {
	var md strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&md, "chatpipe bench, %s, %s, quick=%v\n\n| stage | value | limit | ratio | detail |\n|---|---|---|---|---|\n", time.Now().UTC().Format(time.RFC3339), host, quick)
	for _, r := range rows {
		ratio := ""
		if r.Ratio > 0 {
			ratio = fmt.Sprintf("%.0f%%", r.Ratio*100)
		}
		fmt.Fprintf(&md, "| %s | %.0f %s | %s | %s | %s |\n", r.Stage, r.Value, r.Unit, r.Limit, ratio, r.Detail)
	}
	fmt.Println(md.String())
	out := filepath.Join("..", "..", "bench", "results")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	js, _ := json.MarshalIndent(rows, "", "  ")
	_ = os.WriteFile(filepath.Join(out, "latest.json"), js, 0o644)
	_ = os.WriteFile(filepath.Join(out, "latest.md"), []byte(md.String()), 0o644)
}
