package store_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
)

// The enqueue benchmarks report messages per second (msgs/s) through the whole script: rate
// limit, id, ring push and trim, XADD. Run them with `make bench`. The backlog cap is raised
// so that the stream never fills during a run.

func benchSetup(b *testing.B) *testBundle {
	b.Helper()
	return setup(b, store.Config{BacklogCap: 1 << 40})
}

func BenchmarkEnqueueSingle(b *testing.B) {
	bundle := benchSetup(b)
	ctx := context.Background()
	m := pub("alice", "a typical chat message of some fifty bytes or so....")
	start := time.Now()
	b.ResetTimer()
	for b.Loop() {
		if _, err := bundle.scripts.Enqueue(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkEnqueueParallel64(b *testing.B) {
	bundle := benchSetup(b)
	ctx := context.Background()
	var n atomic.Int64
	b.SetParallelism(32) // 2 cores × 32 = 64 concurrent producers
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		m := pub(fmt.Sprintf("user%d", n.Add(1)), "a typical chat message of some fifty bytes or so....")
		for pb.Next() {
			if _, err := bundle.scripts.Enqueue(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkEnqueueBatch also reports Valkey's own CPU time per message (valkey-µs/msg, from
// INFO cpu): the cost that one script call per batch is there to cut.
func BenchmarkEnqueueBatch(b *testing.B) {
	for _, c := range []struct{ size, users, channels int }{{100, 50, 0}, {500, 500, 0}, {500, 500, 1000}, {1000, 50, 0}} {
		b.Run(fmt.Sprintf("size=%d,users=%d,channels=%d", c.size, c.users, c.channels), func(b *testing.B) {
			bundle := benchSetup(b)
			ctx := context.Background()
			msgs := make([]store.Message, c.size)
			for i := range msgs {
				msgs[i] = pub(fmt.Sprintf("user%d", i%c.users), "a typical chat message of some fifty bytes or so....")
				if c.channels > 0 { // a few busy channels, many quiet ones: channel k about 1/(k+1) of them
					u := float64(uint64(i)*0x9E3779B97F4A7C15%1_000_003) / 1_000_003
					msgs[i].ChannelID = fmt.Sprintf("room-%d", max(min(int(math.Pow(float64(c.channels+1), u))-1, c.channels-1), 0))
				}
			}
			cpu0 := valkeyCPU(b, bundle)
			defer func() {
				b.ReportMetric((valkeyCPU(b, bundle)-cpu0)*1e6/float64(b.N*c.size), "valkey-µs/msg")
			}()
			start := time.Now()
			b.ResetTimer()
			for b.Loop() {
				for _, o := range bundle.scripts.EnqueueMany(ctx, message.Public, msgs) {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
				}
			}
			b.ReportMetric(float64(b.N*c.size)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// valkeyCPU is the CPU time the server used so far, in seconds.
func valkeyCPU(b *testing.B, bundle *testBundle) float64 {
	info, err := bundle.client.Do(context.Background(), bundle.client.B().Info().Section("cpu").Build()).ToString()
	if err != nil {
		b.Fatal(err)
	}
	total := 0.0
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user" || k == "used_cpu_sys" {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}
