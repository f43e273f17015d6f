package lua_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
)

// The enqueue benchmarks report messages per second (msgs/s) through the whole script: rate
// limit, id, ring push and trim, XADD. Run them with `make bench`. The backlog cap is raised
// so that the stream never fills during a run.

func benchSetup(b *testing.B) *testBundle {
	b.Helper()
	return setup(b, lua.Config{BacklogCap: 1 << 40})
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

func BenchmarkEnqueueBatch(b *testing.B) {
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			bundle := benchSetup(b)
			ctx := context.Background()
			msgs := make([]lua.Message, size)
			for i := range msgs {
				msgs[i] = pub(fmt.Sprintf("user%d", i%50), "a typical chat message of some fifty bytes or so....")
			}
			start := time.Now()
			b.ResetTimer()
			for b.Loop() {
				for _, o := range bundle.scripts.EnqueueMany(ctx, keyspace.Public, msgs) {
					if o.Err != nil {
						b.Fatal(o.Err)
					}
				}
			}
			b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}
