//go:build bench

package bench_test

import (
	"fmt"
	"slices"
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
	p := func(q float64) time.Duration { return percentile(lat, q).Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %s, p99 %s, p99.9 %s", p(0.5), p(0.99), p(0.999))
}

// percentile of sorted durations.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// send posts one request on a kept-alive connection and checks the status.
func send(t *testing.T, c *rawConn, path, body string, want int) bool {
	return do(t, c, want, "POST", path, body)
}

// dialAll opens n kept-alive connections.
func dialAll(t *testing.T, addr string, n int) []*rawConn {
	conns := make([]*rawConn, n)
	for i := range conns {
		c, err := dialRaw(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

// closedLoop sends n requests from clients connections, each sending its next request when
// the previous one is answered: the highest rate that many clients reach. It returns requests
// per second and the latency percentiles.
func closedLoop(t *testing.T, addr, path string, clients, n int, body func(int) string, want int) (float64, string) {
	return closedLoopTo(t, addr, func(int) string { return path }, clients, n, body, want)
}

// closedLoopTo is closedLoop with request i sent to path(i).
func closedLoopTo(t *testing.T, addr string, path func(int) string, clients, n int, body func(int) string, want int) (float64, string) {
	rate, lat := closedLoopReq(t, addr, clients, n, func(i int) (string, string, string) { return "POST", path(i), body(i) }, want)
	return rate, latencies(lat)
}

// closedLoopReq is closedLoop with request i made by req (method, path, body); it returns the
// rate and each request's latency.
func closedLoopReq(t *testing.T, addr string, clients, n int, req func(int) (method, path, body string), want int) (float64, []time.Duration) {
	conns := dialAll(t, addr, clients)
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range conns {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				s := time.Now()
				method, path, body := req(i)
				if !do(t, c, want, method, path, body) {
					return
				}
				lat[i] = time.Since(s)
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(start).Seconds(), lat
}

// do sends one request (method, path, body) on a kept-alive connection and checks the status.
func do(t *testing.T, c *rawConn, want int, method, path, body string) bool {
	status, answer, err := c.do(method, path, body)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return false
	}
	if status != want {
		t.Errorf("%s %s: status %d: %s", method, path, status, answer)
		return false
	}
	return true
}

// openLoop sends requests at a fixed rate for d, whatever the answers' speed (no coordinated
// omission: a request's latency counts from when it was due, not from when a sender was free).
// It returns the requests sent and the latency percentiles.
func openLoop(t *testing.T, addr, path string, rate float64, d time.Duration, body func(int) string, want int) (int, string) {
	lat := openLoopReq(t, addr, rate, d, func(i int) (string, string, string) { return "POST", path, body(i) }, want)
	return len(lat), latencies(lat)
}

// openLoopReq is openLoop with request i made by req (method, path, body); it returns each
// answered request's latency.
func openLoopReq(t *testing.T, addr string, rate float64, d time.Duration, req func(int) (method, path, body string), want int) []time.Duration {
	const senders = 256
	conns := dialAll(t, addr, senders)
	due := make(chan time.Time, senders*4)
	var (
		mu  sync.Mutex
		lat []time.Duration
		seq atomic.Int64
		wg  sync.WaitGroup
	)
	for _, c := range conns {
		wg.Go(func() {
			for at := range due {
				method, path, body := req(int(seq.Add(1)) - 1)
				if do(t, c, want, method, path, body) {
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
	return lat
}
