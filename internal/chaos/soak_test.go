//go:build soak

package chaos_test

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestSoak (make soak): SOAK_DURATION (default 10m) at 70% of the rate measured in a 10 s
// burst, one worker restart (SIGTERM, start) a minute; samples RSS, goroutines and the
// end-to-end latency every 10 s and prints a summary. Fails when a process' RSS grows over 10%
// after warm-up, its goroutines grow, or a message is lost.
func TestSoak(t *testing.T) {
	duration := 10 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("SOAK_DURATION")); err == nil && d > 0 {
		duration = min(d, time.Hour)
	}
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	v := testenv.StartValkey(t, "--appendonly", "yes", "--appendfsync", "everysec")
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: []string{"VALKEY_ADDR=" + v.Addr}, dsn: dsn}
	ingest, base := d.ingest(t, "ingest")
	ingest.start(t)
	ingestAddr := strings.TrimPrefix(base, "http://")
	metricsAddr := map[*proc]string{ingest: ingestAddr}
	var workers []*proc
	for i := range 3 {
		addr := testenv.FreeAddr(t)
		// The default FLUSH_INTERVAL: the soak runs the workers as deployed.
		w := d.worker(t, fmt.Sprintf("w%d", i), "FLUSH_METRICS_ADDR="+addr, "FLUSH_INTERVAL=1s")
		w.start(t)
		workers = append(workers, w)
		metricsAddr[w] = addr
	}
	t.Cleanup(func() {
		for _, p := range append(workers, ingest) {
			p.kill()
		}
	})
	testenv.WaitReady(t, base+"/readyz", 20*time.Second)
	l := newLedger()
	c := &client{base: base, http: keepAlive(5 * time.Second), l: l}
	var seq atomic.Int64
	// sendN runs clients until ctx ends; with rate > 0 each client keeps its own open-loop
	// schedule of rate/clients messages a second (a late client catches up, it does not skip).
	sendN := func(ctx context.Context, clients int, rate float64) {
		var wg sync.WaitGroup
		for g := range clients {
			wg.Go(func() {
				var interval time.Duration
				if rate > 0 {
					interval = time.Duration(float64(clients) / rate * float64(time.Second))
				}
				next := time.Now()
				for ctx.Err() == nil {
					if interval > 0 {
						next = next.Add(interval)
						if d := time.Until(next); d > 0 {
							time.Sleep(d)
						}
					}
					n := seq.Add(1)
					kind := "message"
					if n%4 == 0 {
						kind = "private_message"
					}
					c.send(kind, fmt.Sprintf("u%d", (int(n)+g)%500), "s"+strconv.FormatInt(n, 10), 30)
				}
			})
		}
		wg.Wait()
	}
	// The maximum: a 10 s unthrottled burst.
	burst, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	before := seq.Load()
	sendN(burst, 32, 0)
	cancel()
	maxRate := float64(seq.Load()-before) / 10
	rate := 0.7 * maxRate
	t.Logf("soak: measured maximum %.0f msg/s; soaking at %.0f msg/s for %s", maxRate, rate, duration)
	// Let the workers take the burst's backlog before the steady state is measured.
	testenv.WaitFor(t, "the burst's backlog", 120*time.Second, func() bool {
		return rowCount(dsn) >= len(l.accepted["message"])+len(l.accepted["private_message"])
	})
	soakStart := seq.Load()

	ctx, stop := context.WithTimeout(context.Background(), duration)
	defer stop()
	var load sync.WaitGroup
	load.Go(func() { sendN(ctx, 32, rate) })

	type sample struct {
		at         time.Duration
		rss, gor   float64
		e2eBuckets map[float64]float64
	}
	samples := map[*proc][]sample{}
	started := map[*proc]time.Time{}
	for p := range metricsAddr {
		started[p] = time.Now()
	}
	var rows []string
	start := time.Now()
	restarts := 0
	nextRestart := start.Add(time.Minute)
	var prevMinute = map[*proc]map[float64]float64{}
	minute := 0
	window := map[float64]float64{}
	for ctx.Err() == nil {
		time.Sleep(10 * time.Second)
		for p, addr := range metricsAddr {
			m := scrape("http://" + addr + "/metrics")
			if m == nil {
				continue
			}
			s := sample{at: time.Since(started[p]), rss: m.value("process_resident_memory_bytes"), gor: m.value("go_goroutines"), e2eBuckets: m.buckets("chatpipe_flush_end_to_end_seconds_bucket")}
			samples[p] = append(samples[p], s)
			if prev, ok := prevMinute[p]; ok {
				for le, v := range s.e2eBuckets {
					if d := v - prev[le]; d > 0 {
						window[le] += d
					}
				}
			}
			prevMinute[p] = s.e2eBuckets
		}
		if time.Now().After(nextRestart) {
			minute++
			rows = append(rows, fmt.Sprintf("  %4d min  p99 end-to-end %6.3fs  accepted so far %d", minute, quantile(0.99, window), len(l.accepted["message"])+len(l.accepted["private_message"])))
			window = map[float64]float64{}
			w := workers[restarts%len(workers)]
			w.stop()
			w.start(t)
			started[w], samples[w], prevMinute[w] = time.Now(), nil, nil
			restarts++
			nextRestart = nextRestart.Add(time.Minute)
		}
	}
	load.Wait()
	// Drain and count.
	testenv.WaitFor(t, "rows", 120*time.Second, func() bool {
		return rowCount(dsn) >= len(l.accepted["message"])+len(l.accepted["private_message"])
	})
	var b strings.Builder
	fmt.Fprintf(&b, "\nsoak: %s aiming at %.0f msg/s (70%% of %.0f), sent %.0f msg/s, %d worker restarts, %d messages accepted in all, all in PostgreSQL\n",
		duration, rate, maxRate, float64(seq.Load()-soakStart)/duration.Seconds(), restarts, len(l.accepted["message"])+len(l.accepted["private_message"]))
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	fmt.Fprintf(&b, "  %-8s %12s %12s %8s %10s %10s\n", "process", "RSS warm MB", "RSS end MB", "growth", "gor. warm", "gor. end")
	names := []*proc{ingest}
	names = append(names, workers...)
	var bad []string
	for _, p := range names {
		ss := samples[p]
		var warm *sample
		for i := range ss {
			if ss[i].at >= 50*time.Second {
				warm = &ss[i]
				break
			}
		}
		if warm == nil || len(ss) == 0 {
			fmt.Fprintf(&b, "  %-8s (restarted less than a minute before the end)\n", p.name)
			continue
		}
		end := ss[len(ss)-1]
		growth := (end.rss - warm.rss) / warm.rss * 100
		fmt.Fprintf(&b, "  %-8s %12.1f %12.1f %7.1f%% %10.0f %10.0f\n", p.name, warm.rss/1e6, end.rss/1e6, growth, warm.gor, end.gor)
		if growth > 10 {
			bad = append(bad, fmt.Sprintf("%s RSS grew %.1f%%", p.name, growth))
		}
		if end.gor > warm.gor+10 {
			bad = append(bad, fmt.Sprintf("%s goroutines %0.f → %0.f", p.name, warm.gor, end.gor))
		}
	}
	t.Log(b.String())
	if len(bad) > 0 {
		t.Errorf("soak: %s", strings.Join(bad, "; "))
	}
}

// rowCount counts the rows of both message tables (psql: the soak shares no code with the worker).
func rowCount(dsn string) int {
	out, _ := exec.Command("psql", dsn, "-tAc", "SELECT (SELECT count(*) FROM chat_messages) + (SELECT count(*) FROM private_messages)").Output()
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}

type metricsPage map[string]float64

func scrape(url string) metricsPage {
	res, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	m := metricsPage{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			m[line[:i]] += v
		}
	}
	return m
}

func (m metricsPage) value(name string) float64 { return m[name] }

// buckets sums a histogram's buckets over its label sets, by le.
func (m metricsPage) buckets(name string) map[float64]float64 {
	out := map[float64]float64{}
	for k, v := range m {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		i := strings.Index(k, `le="`)
		if i < 0 {
			continue
		}
		rest := k[i+4:]
		le, err := strconv.ParseFloat(rest[:strings.IndexByte(rest, '"')], 64)
		if err == nil {
			out[le] += v
		}
	}
	return out
}

// quantile interpolates q from cumulative buckets, as histogram_quantile does.
func quantile(q float64, buckets map[float64]float64) float64 {
	les := make([]float64, 0, len(buckets))
	for le := range buckets {
		les = append(les, le)
	}
	sort.Float64s(les)
	if len(les) == 0 || buckets[les[len(les)-1]] == 0 {
		return math.NaN()
	}
	total := buckets[les[len(les)-1]]
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, le := range les {
		if buckets[le] >= rank {
			if math.IsInf(le, 1) {
				return prevLe
			}
			return prevLe + (le-prevLe)*(rank-prevCount)/(buckets[le]-prevCount)
		}
		prevLe, prevCount = le, buckets[le]
	}
	return les[len(les)-1]
}
