package streams_test

import (
	"context"
	"maps"
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// FuzzReplay: any dead letter replays byte for byte onto the flush stream — every field of the
// original entry (here all of message.EntryFields and one the schema may gain later), none of
// the dead-letter metadata — and leaves the dead-letter stream, on a real Valkey.
func FuzzReplay(f *testing.F) {
	f.Add("7", "message", `{"cache_id":7,"data":{}}`, "")
	f.Add("", "", "", "")
	f.Add("1", "delete", "\x00\xff redis.call('FLUSHALL') ]] --", "ann")
	v := testenv.StartValkey(f)
	c := v.Client(f)
	keys, _ := keyspace.New("fuzz:")
	dl := streams.NewDeadLetters(c)
	dead, stream := keys.DeadLetter(message.Public), keys.Stream(message.Public)
	f.Fuzz(func(t *testing.T, cacheID, kind, payload, user string) {
		want := map[string]string{"cache_id": cacheID, "kind": kind, "payload": payload, "owner_id": user, "recipient_id": user + "2", "channel_id": "c" + user, "version": "3"}
		if len(want) != len(message.EntryFields)+1 {
			t.Fatalf("message.EntryFields is %v: add the new field here", message.EntryFields)
		}
		args := []string{"XADD", dead, "*"}
		for _, f := range append(message.EntryFields, "version") {
			args = append(args, f, want[f])
		}
		for _, f := range streams.DeadLetterFields {
			args = append(args, f, "meta "+f)
		}
		id, err := testenv.Do(t, c, args...).ToString()
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
		if !maps.Equal(got, want) {
			t.Fatalf("replayed %q, want %q", got, want)
		}
		if n, _ := testenv.Do(t, c, "XLEN", dead).AsInt64(); n != 0 {
			t.Fatalf("%d dead letters left after replay", n)
		}
		testenv.Do(t, c, "DEL", stream)
	})
}
