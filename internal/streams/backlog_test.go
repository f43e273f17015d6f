package streams_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestReadBacklog: for every cursor, both directions and several scan sizes, the backlog read
// returns exactly the message entries on the cursor's side, in scan order, skipping deletions,
// on a stream whose entries bunch in milliseconds and spread over gaps, as ingest writes them.
func TestReadBacklog(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	c := v.Client(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	ms, seq := int64(1_700_000_000_000), 0
	var ids []int64
	for id := int64(10); id < 250; id += 1 + rng.Int64N(3) {
		switch rng.IntN(4) {
		case 0:
			ms += 1 + rng.Int64N(5000)
			seq = 0
		default:
			seq++
		}
		testenv.Do(t, c, "XADD", "s", fmt.Sprintf("%d-%d", ms, seq), "cache_id", strconv.FormatInt(id, 10), "kind", "message", "payload", "p"+strconv.FormatInt(id, 10), "later", "l"+strconv.FormatInt(id, 10))
		ids = append(ids, id)
		if rng.IntN(5) == 0 { // a deletion of an older message
			seq++
			testenv.Do(t, c, "XADD", "s", fmt.Sprintf("%d-%d", ms, seq), "cache_id", strconv.FormatInt(ids[rng.IntN(len(ids))], 10), "kind", "delete", "payload", "")
		}
	}
	// Deletions after the last message, in later milliseconds, as at the end of a backlog.
	for i := range 3 {
		testenv.Do(t, c, "XADD", "s", fmt.Sprintf("%d-0", ms+int64(1000*(i+1))), "cache_id", strconv.FormatInt(ids[i], 10), "kind", "delete", "payload", "")
	}
	testenv.Do(t, c, "ZADD", "pd", "1", "42")
	for cursor := int64(0); cursor <= 252; cursor += 1 + cursor%4 {
		for _, before := range []bool{true, false} {
			for _, max := range []int{1, 3, 1000} {
				var want []int64
				for _, id := range ids {
					if (before && (cursor == 0 || id < cursor)) || (!before && id > cursor) {
						want = append(want, id)
					}
				}
				if before {
					slices.Reverse(want)
				}
				var got []int64
				q := streams.BacklogQuery{Stream: "s", PendingDeletes: "pd", Before: before, Cursor: cursor, Max: max, WithPending: true}
				for range 1000 {
					p, err := streams.ReadBacklogs(ctx, c, []streams.BacklogQuery{q})
					if err != nil {
						t.Fatal(err)
					}
					if p[0].FirstCacheID != ids[0] || (q.WithPending && !slices.Equal(p[0].Pending, []int64{42})) {
						t.Fatalf("first %d pending %v", p[0].FirstCacheID, p[0].Pending)
					}
					for _, e := range p[0].Entries {
						// Every field comes back, one added later too.
						if n := strconv.FormatInt(e.CacheID, 10); e.Fields["payload"] != "p"+n || e.Fields["later"] != "l"+n || e.Fields["kind"] != "message" || len(e.Fields) != 4 {
							t.Fatalf("entry %+v", e)
						}
						got = append(got, e.CacheID)
					}
					if p[0].Next == "" {
						break
					}
					q.Resume, q.WithPending = p[0].Next, false
				}
				if !slices.Equal(got, want) {
					t.Fatalf("cursor %d before %t max %d:\n got %v\nwant %v", cursor, before, max, got, want)
				}
			}
		}
	}
}
