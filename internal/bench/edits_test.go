//go:build bench

package bench_test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// edits measures the edit endpoint beside the single-message endpoint, in one run (three rounds
// in turns, medians): 64 clients each, the edits of messages sent just before (found in their
// channel's backlog index, no worker running), every author editing their own. Target: ≥ 0.8×.
func (b *bench) edits() {
	t := b.t
	v := testenv.StartValkey(t)
	in := b.startIngest(v.Addr, "DATABASE_URL="+b.newDB())
	n := sized(40_000, 8_000)
	const channel = "team-42.general"
	var sends, edits []float64
	var lat string
	pids := map[string]int{"ingest": in.pid, "valkey": v.Pid()}
	var cpu string
	for range 3 {
		// The messages to edit, sent now: their ids, by author.
		ids := make([]int64, n)
		conns := dialAll(t, in.addr, 64)
		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for _, c := range conns {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					status, answer, err := c.post("/v1/channels/"+channel+"/messages", singleBody(i))
					if err != nil || status != http.StatusAccepted {
						t.Errorf("POST: %d %s %v", status, answer, err)
						return
					}
					id, _ := strconv.ParseInt(string(answer[len(`{"cache_id":`):len(answer)-2]), 10, 64)
					ids[i] = id
				}
			})
		}
		wg.Wait()
		sends = append(sends, float64(n)/time.Since(start).Seconds())
		meter := meterCPU(pids)
		next.Store(0)
		lats := make([]time.Duration, n)
		start = time.Now()
		for _, c := range conns {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					s := time.Now()
					body := fmt.Sprintf(`{"owner_id":"u%d","content":"`+content+` (edited)"}`, i%1000)
					status, answer, err := c.do("PATCH", fmt.Sprintf("/v1/channels/%s/messages/%d", channel, ids[i]), body)
					if err != nil || status != http.StatusOK {
						t.Errorf("PATCH: %d %s %v", status, answer, err)
						return
					}
					lats[i] = time.Since(s)
				}
			})
		}
		wg.Wait()
		edits = append(edits, float64(n)/time.Since(start).Seconds())
		cpu, lat = meter.String(), latencies(lats)
	}
	median := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	one, ed := median(sends), median(edits)
	met := ed/one >= 0.8
	b.add(row{Stage: "edits: edit endpoint (PATCH, 64 clients, messages waiting in the backlog)", Value: ed, Unit: "edits/s",
		Limit: "single-message endpoint", Ratio: ed / one, Target: "≥ 80%", Met: &met,
		Detail: fmt.Sprintf("sends %.0f msgs/s (medians of 3 rounds in turns); edits %s; %s", one, lat, cpu)})
}
