package flush_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestDrainsWhileFull: Valkey full under noeviction, and no consumer group yet (the first
// worker starts after the backlog filled memory, as after a long outage): the worker creates
// its group all the same, reads, writes, acks and trims, and the trim gives the memory back
// so that writes are taken again.
func TestDrainsWhileFull(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 3000
	b.enqueue(t, message.Public, n)
	used, _ := testenv.Do(t, b.client, "MEMORY", "USAGE", b.keys.Stream(message.Public)).AsInt64()
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	info, _ := testenv.Do(t, b.client, "INFO", "memory").ToString()
	var total int64
	if _, err := fmt.Sscanf(info[strings.Index(info, "used_memory:"):], "used_memory:%d", &total); err != nil {
		t.Fatal(err)
	}
	// Below what is used now, above what is used once the stream is trimmed (which frees less
	// than MEMORY USAGE estimates: 220 of 475 kB here).
	limit := total - min(used/8, 50_000)
	testenv.Do(t, b.client, "CONFIG", "SET", "maxmemory", fmt.Sprint(limit))
	if err := b.client.Do(t.Context(), b.client.B().Set().Key("probe").Value("x").Build()).Error(); err == nil {
		t.Fatalf("Valkey takes writes with maxmemory %d (used %d): the test did not fill it", limit, total)
	}
	b.start(t, b.config("w1"))
	testenv.WaitFor(t, "every entry written", 30*time.Second, func() bool {
		got, _ := b.rows(t, "chat_messages")
		return got == n
	})
	testenv.WaitFor(t, "the stream trimmed and writes taken again", 30*time.Second, func() bool {
		return b.xlen(t, b.keys.Stream(message.Public)) == 0 &&
			b.client.Do(t.Context(), b.client.B().Set().Key("probe").Value("x").Build()).Error() == nil
	})
	if p := b.pending(t, message.Public); p != 0 {
		t.Fatalf("%d pending after the drain", p)
	}
}
