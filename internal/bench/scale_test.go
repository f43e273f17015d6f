//go:build bench

package bench_test

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// scaling measures the partitioned layout beside the single one on this 2-core machine: the
// batch endpoint (500, 8 clients) and the single-message endpoint (64 clients) against one
// standalone server in each layout and against a 3+3 cluster, with Valkey's CPU time per message
// summed over the primaries. From the CPU per message per primary it derives the rate that N
// primaries on N cores would sustain — an estimate, since here every primary, ingest and the
// load generator share two cores.
func (b *bench) scaling() {
	t := b.t
	body := batchBody(500)
	type setup struct {
		name      string
		addr      string
		env       []string
		primaries map[string]int
	}
	single := testenv.StartValkey(t)
	part := testenv.StartValkey(t)
	cl := testenv.StartCluster(t)
	primaries := map[string]int{}
	for i, n := range cl.Nodes[:3] { // the primaries at creation
		primaries[fmt.Sprintf("valkey%d", i)] = n.Pid()
	}
	seeds := strings.Join(strings.Split(cl.Addrs, ",")[:2], ",")
	for _, s := range []setup{
		{"single layout, 1 server", single.Addr, nil, map[string]int{"valkey": single.Pid()}},
		{"partitioned layout, 1 server", part.Addr, []string{"KEY_LAYOUT=partitioned"}, map[string]int{"valkey": part.Pid()}},
		// Six servers, ingest and the load generator on two cores: a batch's round trips can pass
		// the default 500 ms bound, which answers 503; this stage measures throughput.
		{"partitioned layout, cluster of 3 primaries", seeds, []string{"KEY_LAYOUT=partitioned", "VALKEY_MODE=cluster", "VALKEY_TIMEOUT=3s"}, primaries},
	} {
		in := b.startIngest(s.addr, s.env...)
		for _, load := range []struct {
			what    string
			clients int
			n       int
			path    string
			body    func(int) string
			per     int
			status  int
		}{
			{"batch endpoint (500), 8 clients", 8, sized(400, 100), "/v1/messages/batch", func(int) string { return body }, 500, http.StatusOK},
			{"single-message endpoint, 64 clients", 64, sized(60_000, 15_000), "/v1/messages", singleBody, 1, http.StatusAccepted},
		} {
			before := map[string]float64{}
			for name, pid := range s.primaries {
				before[name] = cpuSeconds(pid)
			}
			ingestBefore := cpuSeconds(in.pid)
			rate, lat := closedLoop(t, in.addr, load.path, load.clients, load.n, load.body, load.status)
			msgs := float64(load.n * load.per)
			var valkeyCPU float64
			for name, pid := range s.primaries {
				valkeyCPU += cpuSeconds(pid) - before[name]
			}
			perMsg := valkeyCPU / msgs * 1e6 // µs of Valkey CPU per message, all primaries
			detail := fmt.Sprintf("%s; Valkey %.1f µs CPU a message over %d primar%s; ingest %.1f µs a message",
				lat, perMsg, len(s.primaries), map[bool]string{true: "y", false: "ies"}[len(s.primaries) == 1], (cpuSeconds(in.pid)-ingestBefore)/msgs*1e6)
			if perMsg > 0 {
				detail += fmt.Sprintf("; Valkey-bound ceiling %.0f msgs/s a primary, so about %.0f with 3 and %.0f with 6 primaries on their own cores", 1e6/perMsg, 3*1e6/perMsg, 6*1e6/perMsg)
			}
			b.add(row{Stage: "scaling: " + s.name + ", " + load.what, Value: rate * float64(load.per), Unit: "msgs/s", Detail: detail})
		}
	}
}
