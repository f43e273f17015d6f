package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/store"
)

// The HTTP benchmarks measure the whole enqueue path through ingest's handler (decode,
// validate, script, encode) over real loopback HTTP, in messages per second.

func BenchmarkHTTPSingle(b *testing.B) {
	bundle := setupB(b)
	var n atomic.Int64
	b.SetParallelism(32) // 64 concurrent clients on 2 cores
	// One transport keeping a connection per client, as a real load balancer would: the default
	// keeps two idle connections per host and so would measure TCP set-up, not the handler.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		user := fmt.Sprintf("user%d", n.Add(1))
		body := `{"owner_id":"` + user + `","username":"U","content":"a typical chat message of some fifty bytes or so...."}`
		for pb.Next() {
			res, err := client.Post(bundle.url+"/v1/messages", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			// Read to the end: a body closed unread makes the transport drop the connection.
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkHTTPBatch(b *testing.B) {
	bundle := setupB(b)
	const size = 500
	var sb strings.Builder
	sb.WriteString(`{"messages":[`)
	for i := range size {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"owner_id":"user%d","username":"U","content":"a typical chat message of some fifty bytes or so...."}`, i%100)
	}
	sb.WriteString(`]}`)
	body := sb.String()
	b.SetParallelism(2)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := http.Post(bundle.url+"/v1/messages/batch", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "msgs/s")
}

func setupB(b *testing.B) *testBundle {
	b.Helper()
	return setup(b, options{rate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}, backlogCap: 1 << 40})
}
