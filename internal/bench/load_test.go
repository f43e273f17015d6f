//go:build bench

package bench_test

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// latencies summarises a set of durations.
func latencies(lat []time.Duration) string {
	if len(lat) == 0 {
		return "no samples"
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		return lat[min(len(lat)-1, int(q*float64(len(lat))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("p50 %s, p99 %s, p99.9 %s", p(0.5), p(0.99), p(0.999))
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
}

// post sends one request and reads the answer to its end: a body closed unread makes the
// transport drop the connection, and the benchmark would measure TCP set-up instead of ingest.
func post(t *testing.T, client *http.Client, url, body string, want int) bool {
	res, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return false
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != want {
		t.Errorf("POST %s: status %d: %s", url, res.StatusCode, b)
		return false
	}
	return true
}

// closedLoop sends n requests from clients goroutines, each sending its next request when the
// previous one is answered: the highest rate that many clients reach. It returns requests per
// second and the latency percentiles.
func closedLoop(t *testing.T, url string, clients, n int, body func(int) string, want int) (float64, string) {
	client := newHTTPClient(clients)
	defer client.CloseIdleConnections()
	lat := make([]time.Duration, n)
	rate := parallel(n, clients, func(i int) {
		start := time.Now()
		if post(t, client, url, body(i), want) {
			lat[i] = time.Since(start)
		}
	})
	return rate, latencies(lat)
}

// openLoop sends requests at a fixed rate for d, whatever the answers' speed (no coordinated
// omission: a request's latency counts from when it was due, not from when a sender was free).
// It returns the requests sent and the latency percentiles.
func openLoop(t *testing.T, url string, rate float64, d time.Duration, body func(int) string, want int) (int, string) {
	const senders = 256
	client := newHTTPClient(senders)
	defer client.CloseIdleConnections()
	due := make(chan time.Time, senders*4)
	var (
		mu  sync.Mutex
		lat []time.Duration
		seq atomic.Int64
		wg  sync.WaitGroup
	)
	for range senders {
		wg.Go(func() {
			for at := range due {
				if post(t, client, url, body(int(seq.Add(1))), want) {
					l := time.Since(at)
					mu.Lock()
					lat = append(lat, l)
					mu.Unlock()
				}
			}
		})
	}
	start := time.Now()
	sent := 0
	// Release the requests due each millisecond: a ticker cannot fire every 30 µs.
	tick := time.NewTicker(time.Millisecond)
	for now := range tick.C {
		elapsed := now.Sub(start)
		if elapsed >= d {
			break
		}
		for target := int(rate * elapsed.Seconds()); sent < target; sent++ {
			due <- start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
		}
	}
	tick.Stop()
	close(due)
	wg.Wait()
	return sent, latencies(lat)
}
