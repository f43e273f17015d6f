package flush_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestPartitionedRingsRepaired: in the partitioned layout ingest writes private rings after the
// enqueue; when that step is lost (here: the entries removed from the rings again for one send
// in ten), the workers put them back before they ack, and every ring ends exact: its user's
// newest messages, in id order, each once.
func TestPartitionedRingsRepaired(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys, _ := keyspace.NewPartitioned("", 4)
	ops, err := store.Open(b.client, store.Config{Layout: keys, RecentSize: 20, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	users := []string{"ann", "bob", "cid"}
	mine := map[string][]int64{}
	for i := range 90 {
		from, to := users[i%3], users[(i/3)%3] // self-DMs too
		m := message.Message{OwnerID: from, RecipientID: to, Content: fmt.Sprintf("m%d", i), CreatedAt: "2026-12-01T10:00:00Z"}
		res, err := ops.Enqueue(ctx, store.Message{OwnerID: from, RecipientID: to, Data: m.JSON()})
		if err != nil {
			t.Fatal(err)
		}
		mine[from] = append(mine[from], res.CacheID)
		if to != from {
			mine[to] = append(mine[to], res.CacheID)
		}
		if i%10 == 0 { // the ring step lost for this send
			for _, u := range []string{from, to} {
				testenv.Do(t, b.client, "ZREMRANGEBYSCORE", keys.PrivateRing(u), fmt.Sprint(res.CacheID), fmt.Sprint(res.CacheID))
			}
		}
	}
	for _, fs := range keys.FlushStreams() {
		if fs.Kind != message.Private || fs.Partition == "" {
			continue
		}
		cfg := b.config("w-" + fs.Partition)
		cfg.Flush, cfg.RepairFunc = fs, ops.RepairRings
		b.start(t, cfg)
	}
	testenv.WaitFor(t, "every private message written", 20*time.Second, func() bool {
		total, _ := b.rows(t, "private_messages")
		return total == 90
	})
	for _, u := range users {
		ids := mine[u]
		slices.Sort(ids)
		want := ids[max(0, len(ids)-20):]
		testenv.WaitFor(t, u+"'s ring repaired", 10*time.Second, func() bool {
			ring, err := ops.Recent(ctx, message.PrivateTimeline(u), 20)
			if err != nil {
				return false
			}
			got := make([]int64, len(ring))
			for i, e := range ring {
				var v struct {
					CacheID int64 `json:"cache_id"`
				}
				_ = json.Unmarshal([]byte(e), &v)
				got[i] = v.CacheID
			}
			return slices.Equal(got, want)
		})
	}
}

// TestPartitionedDeleteEitherOrder: in the partitioned layout a deletion goes to the deleted
// message's partition stream, and the worker removes the row whichever it meets first.
func TestPartitionedDeleteEitherOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	keys, _ := keyspace.NewPartitioned("", 4)
	ops, err := store.Open(b.client, store.Config{Layout: keys, DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []int64
	for i := range 3 {
		m := message.Message{OwnerID: fmt.Sprintf("u%d", i), Content: "x", CreatedAt: "2026-12-01T10:00:00Z"}
		res, err := ops.Enqueue(ctx, store.Message{OwnerID: m.OwnerID, Data: m.JSON()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.CacheID)
	}
	if err := ops.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: ids[0]}); err != nil { // before any worker ran
		t.Fatal(err)
	}
	for _, fs := range keys.FlushStreams() {
		if fs.Kind == message.Public && fs.Partition != "" {
			cfg := b.config("w-" + fs.Partition)
			cfg.Flush = fs
			b.start(t, cfg)
		}
	}
	testenv.WaitFor(t, "two rows", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 2 })
	if err := ops.Delete(ctx, message.Ref{Kind: message.Public, ChannelID: "", CacheID: ids[1]}); err != nil { // after its row was written
		t.Fatal(err)
	}
	testenv.WaitFor(t, "the row deleted", 10*time.Second, func() bool { total, _ := b.rows(t, "chat_messages"); return total == 1 })
}
