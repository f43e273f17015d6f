//go:build bench

package bench_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// channelFanout: 1 000 SSE subscribers over 100 channels (10 each) and one firehose, 2 000
// messages/s sent for 10 s spread evenly over the channels: every subscriber must get every
// message of its channel (the firehose every message), and the send → receive latency is
// measured from a timestamp each message carries. Targets: none missing; p99 ≤ 50 ms.
func (b *bench) channelFanout() {
	t := b.t
	v := testenv.StartValkey(t)
	in := b.startIngest(v.Addr, "INGEST_TAIL_MAX=2000")
	const (
		channels    = 100
		subscribers = 1000
		rate        = 2000.0
	)
	d := time.Duration(sized(10, 3)) * time.Second
	var (
		mu        sync.Mutex
		lat       []time.Duration
		delivered atomic.Int64
		ready     sync.WaitGroup
		done      sync.WaitGroup
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: subscribers + 8}}
	ctx, cancel := context.WithCancel(b.ctx)
	defer cancel()
	follow := func(path string, got *atomic.Int64) {
		ready.Add(1)
		done.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.addr+path, nil)
			res, err := client.Do(req)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Errorf("subscribing to %s: %v", path, err)
				ready.Done()
				return
			}
			defer res.Body.Close()
			ready.Done()
			sc := bufio.NewScanner(res.Body)
			var mine []time.Duration
			for sc.Scan() {
				line := sc.Text()
				data, ok := strings.CutPrefix(line, "data: ")
				if !ok {
					continue
				}
				var m struct {
					Data struct {
						Content string `json:"content"`
					} `json:"data"`
				}
				if json.Unmarshal([]byte(data), &m) != nil {
					continue
				}
				if ns, err := strconv.ParseInt(strings.TrimPrefix(m.Data.Content, "t"), 10, 64); err == nil {
					mine = append(mine, time.Since(time.Unix(0, ns)))
					got.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	counts := make([]atomic.Int64, subscribers)
	var fire atomic.Int64
	for i := range subscribers {
		follow(fmt.Sprintf("/v1/channels/room-%d/messages/stream", i%channels), &counts[i])
	}
	follow("/v1/channels/stream?all=true", &fire)
	deliveredTo := func() (n int64) {
		for i := range counts {
			n += counts[i].Load()
		}
		return n
	}
	ready.Wait()
	conns := dialAll(t, in.addr, 32)
	due := make(chan int, 1024)
	var senders sync.WaitGroup
	for _, c := range conns {
		senders.Go(func() {
			for i := range due {
				body := fmt.Sprintf(`{"owner_id":"u%d","username":"U","content":"t%d"}`, i%1000, time.Now().UnixNano())
				send(t, c, fmt.Sprintf("/v1/channels/room-%d/messages", i%channels), body, http.StatusAccepted)
			}
		})
	}
	cpu := meterCPU(map[string]int{"ingest": in.pid, "valkey": v.Pid()})
	ingestBefore := cpuSeconds(in.pid)
	start := time.Now()
	sent := 0
	tick := time.NewTicker(time.Millisecond)
	for now := range tick.C {
		if now.Sub(start) >= d {
			break
		}
		for target := int(rate * now.Sub(start).Seconds()); sent < target; sent++ {
			due <- sent
		}
	}
	tick.Stop()
	close(due)
	senders.Wait()
	// Message i went to channel i % channels, which 10 subscribers follow.
	want := int64(sent * subscribers / channels)
	testenv.WaitFor(t, "every event delivered", 30*time.Second, func() bool { return deliveredTo() >= want && fire.Load() >= int64(sent) })
	usage, ingestCPU := cpu.String(), cpuSeconds(in.pid)-ingestBefore
	cancel() // the subscribers end and hand in their latencies
	done.Wait()
	delivered.Store(deliveredTo() + fire.Load())
	var missing, extra int64
	for i := range counts { // each subscriber: exactly the messages of its channel
		k := i % channels
		exp := int64(sent/channels + min(1, max(0, sent%channels-k)))
		missing += max(0, exp-counts[i].Load())
		extra += max(0, counts[i].Load()-exp)
	}
	missing += max(0, int64(sent)-fire.Load())
	extra += max(0, fire.Load()-int64(sent))
	summary := latencies(lat) // sorts lat
	var p99 time.Duration
	if len(lat) > 0 {
		p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	met := missing == 0 && extra == 0 && p99 <= 50*time.Millisecond
	b.add(row{Stage: fmt.Sprintf("channels: tail fan-out, %d subscribers over %d channels + a firehose, %.0f msgs/s", subscribers, channels, rate),
		Value: float64(p99.Microseconds()) / 1000, Unit: "ms p99", Target: "≤ 50 ms, none missing", Met: &met,
		Detail: fmt.Sprintf("%d events delivered, %d missing, %d extra; send → receive %s; ingest CPU %.1f µs an event; %s", delivered.Load(), missing, extra, summary, ingestCPU/float64(delivered.Load())*1e6, usage)})
}
