package streams_test

import (
	"context"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// FuzzReplay: any dead letter replays byte for byte (cache_id, kind, payload) onto the flush
// stream and leaves the dead-letter stream, on a real Valkey.
func FuzzReplay(f *testing.F) {
	f.Add("7", "message", `{"cache_id":7,"data":{}}`)
	f.Add("", "", "")
	f.Add("1", "delete", "\x00\xff redis.call('FLUSHALL') ]] --")
	v := testenv.StartValkey(f)
	c := v.Client(f)
	keys, _ := keyspace.New("fuzz:")
	dl := streams.NewDeadLetters(c)
	dead, stream := keys.DeadLetter(keyspace.Public), keys.Stream(keyspace.Public)
	f.Fuzz(func(t *testing.T, cacheID, kind, payload string) {
		id, err := testenv.Do(t, c, "XADD", dead, "*", "cache_id", cacheID, "kind", kind, "payload", payload, "error", "x").ToString()
		if err != nil {
			t.Fatal(err)
		}
		newID, err := dl.Replay(context.Background(), keys.FlushStreams()[0], id)
		if err != nil || newID == "" {
			t.Fatalf("replay: %q, %v", newID, err)
		}
		xs, err := testenv.Do(t, c, "XRANGE", stream, newID, newID).AsXRange()
		if err != nil || len(xs) != 1 {
			t.Fatalf("replayed entry: %v, %v", xs, err)
		}
		got := xs[0].FieldValues
		if got["cache_id"] != cacheID || got["kind"] != kind || got["payload"] != payload || len(got) != 3 {
			t.Fatalf("replayed %q, want cache_id=%q kind=%q payload=%q", got, cacheID, kind, payload)
		}
		if n, _ := testenv.Do(t, c, "XLEN", dead).AsInt64(); n != 0 {
			t.Fatalf("%d dead letters left after replay", n)
		}
		testenv.Do(t, c, "DEL", stream)
	})
}
