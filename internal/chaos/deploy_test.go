package chaos_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestFullValkey runs both binaries against a Valkey with maxmemory 8mb under noeviction and no
// worker until it is full: no answer is a 500, the refusals are 503 valkey_full with
// Retry-After, /readyz fails; a worker started then drains it, writes are accepted again, and
// every message answered 202 is in PostgreSQL with its content.
func TestFullValkey(t *testing.T) {
	testenv.Slow(t, "fills a Valkey through the binaries")
	t.Parallel()
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	v := testenv.StartValkey(t, "--maxmemory", "8mb", "--maxmemory-policy", "noeviction")
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: []string{"VALKEY_ADDR=" + v.Addr}, dsn: dsn}
	ingest, base := d.ingest(t, "ingest")
	ingest.start(t)
	worker := d.worker(t, "worker") // started once Valkey is full
	killOnCleanup(t, worker, ingest)
	testenv.WaitReady(t, base+"/readyz", 20*time.Second)

	l := newLedger()
	hc := keepAlive(3 * time.Second)
	var statuses sync.Map // status → *atomic.Int64
	var full atomic.Int64 // valkey_full answers
	var next atomic.Int64
	var fivehundreds atomic.Int64
	post := func() int {
		token := fmt.Sprintf("f%d", next.Add(1))
		raw, _ := json.Marshal(map[string]string{"owner_id": "u" + token[len(token)-1:], "content": "chaos " + token + " " + strings.Repeat("x", 200)})
		res, err := hc.Post(base+"/v1/messages", "application/json", bytes.NewReader(raw))
		if err != nil {
			l.mu.Lock()
			l.unknown[token+" "+strings.Repeat("x", 200)] = true
			l.mu.Unlock()
			return 0
		}
		var out struct {
			CacheID int64  `json:"cache_id"`
			Error   string `json:"error"`
		}
		_ = json.NewDecoder(res.Body).Decode(&out)
		drain(res)
		n, _ := statuses.LoadOrStore(res.StatusCode, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		switch {
		case res.StatusCode == http.StatusAccepted:
			l.mu.Lock()
			l.accepted["message"][out.CacheID] = token + " " + strings.Repeat("x", 200)
			l.channel[token+" "+strings.Repeat("x", 200)] = "general"
			l.mu.Unlock()
		case res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable:
			fivehundreds.Add(1)
		case out.Error == "valkey_full" && res.Header.Get("Retry-After") != "":
			full.Add(1)
		}
		return res.StatusCode
	}
	// Fill: bounded in count and time.
	var load sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for range 8 {
		load.Go(func() {
			for full.Load() < 200 && time.Now().Before(deadline) && next.Load() < 300_000 {
				post()
			}
		})
	}
	load.Wait()
	if full.Load() < 200 {
		t.Fatalf("Valkey was not full after %d messages in 60 s (%d valkey_full answers)", next.Load(), full.Load())
	}
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	drain(res)
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while full: %d, want 503", res.StatusCode)
	}
	t.Logf("full after %d messages, %d accepted", next.Load(), len(l.accepted["message"]))

	worker.start(t)
	testenv.WaitFor(t, "writes accepted again once the worker drains", 60*time.Second, func() bool {
		return post() == http.StatusAccepted
	})
	testenv.WaitReady(t, base+"/readyz", 20*time.Second)
	for range 100 { // a few more, accepted now
		post()
	}
	waitDrained(t, v.Client(t))
	worker.stop()
	r := check(t, 0, dsn, v.Client(t), l, map[string]int{"valkey filled to maxmemory 8mb": 1}, []*proc{worker})
	if r.violations() > 0 {
		t.Errorf("after the full spell:\n  %s", strings.Join(r.examples, "\n  "))
	}
	if n := fivehundreds.Load(); n > 0 {
		t.Errorf("%d answers were 5xx other than 503", n)
	}
	statuses.Range(func(k, v any) bool {
		t.Logf("status %v: %d", k, v.(*atomic.Int64).Load())
		return true
	})
}

// TestBinariesRefuseCluster points both binaries, in standalone mode, at a real local cluster:
// each exits with status 2 and one line naming VALKEY_MODE, and nothing panics.
func TestBinariesRefuseCluster(t *testing.T) {
	testenv.Slow(t, "starts a six-node cluster")
	t.Parallel()
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	c := testenv.StartCluster(t)
	seed := strings.Split(c.Addrs, ",")[0]
	for _, bin := range []string{"ingest", "flushworker"} {
		cmd := exec.Command(filepath.Join(dir, bin))
		cmd.Env = []string{"VALKEY_ADDR=" + seed, "INGEST_ADDR=127.0.0.1:0", "FLUSH_METRICS_ADDR=127.0.0.1:0", "DATABASE_URL=postgres://127.0.0.1:1/none"}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatalf("%s kept running against a cluster in standalone mode", bin)
		}
		var ee *exec.ExitError
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		last := lines[len(lines)-1]
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(last, "VALKEY_MODE") || strings.Contains(stderr.String(), "panic") {
			t.Fatalf("%s: exit %v, stderr:\n%s\nwant exit 2, a last line naming VALKEY_MODE, no panic", bin, err, stderr.String())
		}
		t.Logf("%s: %s", bin, last)
	}
}
