//go:build bench

package bench_test

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// benchEmoji are 20 emoji: REACTIONS_MAX_DISTINCT's default.
var benchEmoji = func() []string {
	out := []string{"👍", "❤️", "😂", "🎉", "🔥", "👀", "🙏", "✅", "🇫🇷", "💯"}
	for i := range 10 {
		out = append(out, url.PathEscape(fmt.Sprintf(":code-%d:", i)))
	}
	for i := range 10 {
		out[i] = url.PathEscape(out[i])
	}
	return out
}()

// reactions measures reactions beside the sends they ride with, three rounds in turns, medians:
//   - a hot message: 2 000 sends/s to a channel alone, then with 2 000 reaction toggles/s on one
//     of its messages (every toggle a change: new users each round, 20 000 reactions on one
//     message by the end of a round); the sends' p99 with against without (target ≤ 1.1×);
//   - a history page of 50 messages with 20 emoji each against a page of 50 bare messages
//     (8 clients, closed loop; target p99 ≤ 1.2×), and the same page marking a viewer's own;
//   - reactions per second against single sends, 64 clients each (target ≥ 0.8×).
func (b *bench) reactions() {
	t := b.t
	v := testenv.StartValkey(t)
	dsn := b.newDB()
	testenv.Migrate(t, filepath.Join(b.dir, "flushworker"), dsn)
	in := b.startIngest(v.Addr, "DATABASE_URL="+dsn, "RECENT_SIZE=500")
	pids := map[string]int{"ingest": in.pid, "valkey": v.Pid()}
	c := dialAll(t, in.addr, 1)[0]
	post := func(channel string, i int) int64 {
		status, answer, err := c.post("/v1/channels/"+channel+"/messages", singleBody(i))
		if err != nil || status != http.StatusAccepted {
			t.Fatalf("POST: %d %s %v", status, answer, err)
		}
		id, _ := strconv.ParseInt(string(answer[len(`{"cache_id":`):len(answer)-2]), 10, 64)
		return id
	}
	median := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
	p99 := func(lat []time.Duration) float64 {
		slices.Sort(lat)
		return float64(percentile(lat, 0.99)) / float64(time.Millisecond)
	}

	// A hot message.
	hot := post("hot", 0)
	d := time.Duration(sized(10, 4)) * time.Second
	const rate = 2000.0
	sends := func(i int) (string, string, string) { return "POST", "/v1/channels/hot/messages", singleBody(i) }
	var alone, busier, with []float64
	var cpu string
	for round := range 3 {
		alone = append(alone, p99(openLoopReq(t, in.addr, rate, d, sends, http.StatusAccepted)))
		// The same added load as sends to another channel: what any 2 000 more requests a
		// second cost this 2-core machine.
		var wg sync.WaitGroup
		wg.Go(func() {
			openLoopReq(t, in.addr, rate, d, func(i int) (string, string, string) {
				return "POST", "/v1/channels/elsewhere/messages", singleBody(i)
			}, http.StatusAccepted)
		})
		busier = append(busier, p99(openLoopReq(t, in.addr, rate, d, sends, http.StatusAccepted)))
		wg.Wait()
		meter := meterCPU(pids)
		var toggled []time.Duration
		wg.Go(func() {
			toggled = openLoopReq(t, in.addr, rate, d, func(i int) (string, string, string) {
				return "PUT", fmt.Sprintf("/v1/channels/hot/messages/%d/reactions/%s/r%d-u%d", hot, benchEmoji[(i/1000)%20], round, i%1000), ""
			}, http.StatusOK)
		})
		with = append(with, p99(openLoopReq(t, in.addr, rate, d, sends, http.StatusAccepted)))
		wg.Wait()
		cpu = fmt.Sprintf("toggles %s; %s", latencies(toggled), meter)
	}
	// Each row keeps a flag of its own (a shared variable would give every row the last one).
	flag := func(b bool) *bool { return &b }
	ratio := median(with) / median(alone)
	b.add(row{Stage: "reactions: send p99 beside 2 000 toggles/s on one message of the channel", Value: median(with), Unit: "ms",
		Limit: "the same sends alone", Ratio: ratio, Target: "≤ 1.1×", Met: flag(ratio <= 1.1),
		Detail: fmt.Sprintf("2 000 sends/s; p99 %.2f ms alone, %.2f ms beside 2 000 sends/s to another channel (%.2f×), %.2f ms beside the toggles (medians of 3 rounds in turns); %s",
			median(alone), median(busier), median(busier)/median(alone), median(with), cpu)})

	// A page of reacted messages against a bare one: the newest 50 of 60, from the ring.
	for i := range 60 {
		post("bare", i)
		id := post("reacted", i)
		if i < 10 {
			continue
		}
		for _, e := range benchEmoji {
			for u := range 3 {
				status, answer, err := c.do("PUT", fmt.Sprintf("/v1/channels/reacted/messages/%d/reactions/%s/p%d", id, e, u), "")
				if err != nil || status != http.StatusOK {
					t.Fatalf("PUT: %d %s %v", status, answer, err)
				}
			}
		}
	}
	n := sized(8000, 2000)
	page := func(channel, query string) func(int) (string, string, string) {
		return func(int) (string, string, string) {
			return "GET", "/v1/channels/" + channel + "/messages/history?limit=50" + query, ""
		}
	}
	var barePage, reactedPage, viewerPage []float64
	for range 3 {
		_, lat := closedLoopReq(t, in.addr, 8, n, page("bare", ""), http.StatusOK)
		barePage = append(barePage, p99(lat))
		_, lat = closedLoopReq(t, in.addr, 8, n, page("reacted", ""), http.StatusOK)
		reactedPage = append(reactedPage, p99(lat))
		_, lat = closedLoopReq(t, in.addr, 8, n, page("reacted", "&viewer=p1"), http.StatusOK)
		viewerPage = append(viewerPage, p99(lat))
	}
	ratio = median(reactedPage) / median(barePage)
	b.add(row{Stage: "reactions: history page of 50 messages with 20 emoji each, p99", Value: median(reactedPage), Unit: "ms",
		Limit: "a page of 50 bare messages", Ratio: ratio, Target: "≤ 1.2×", Met: flag(ratio <= 1.2),
		Detail: fmt.Sprintf("8 clients, closed loop, %d pages each round; bare p99 %.2f ms; with ?viewer= %.2f ms (%.2f×); medians of 3 rounds in turns",
			n, median(barePage), median(viewerPage), median(viewerPage)/median(barePage))})

	// Reactions per second against single sends.
	m := sized(40_000, 8_000)
	var ids []int64
	for i := range m / len(benchEmoji) {
		ids = append(ids, post("rate", i))
	}
	var sent, reacted []float64
	for round := range 3 {
		r, _ := closedLoopReq(t, in.addr, 64, m, func(i int) (string, string, string) {
			return "POST", "/v1/channels/rate/messages", singleBody(i)
		}, http.StatusAccepted)
		sent = append(sent, r)
		meter := meterCPU(pids)
		if profile && round == 0 {
			go b.cpuProfile(in.pprof, "ingest-reactions", 3*time.Second)
		}
		r, lat := closedLoopReq(t, in.addr, 64, m, func(i int) (string, string, string) {
			return "PUT", fmt.Sprintf("/v1/channels/rate/messages/%d/reactions/%s/x%d", ids[i%len(ids)], benchEmoji[(i/len(ids))%20], round), ""
		}, http.StatusOK)
		reacted = append(reacted, r)
		cpu = fmt.Sprintf("toggles %s; %s", latencies(lat), meter)
	}
	ratio = median(reacted) / median(sent)
	b.add(row{Stage: "reactions: toggles (PUT, 64 clients, each a change)", Value: median(reacted), Unit: "toggles/s",
		Limit: "single-message endpoint", Ratio: ratio, Target: "≥ 80%", Met: flag(ratio >= 0.8),
		Detail: fmt.Sprintf("sends %.0f msgs/s (medians of 3 rounds in turns); %s", median(sent), cpu)})
}
