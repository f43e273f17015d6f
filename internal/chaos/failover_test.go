package chaos_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	chatpipe "github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestRetryAfterUnreplicatedRead is a failover that once stored a message twice, step by
// step, with the failover done by hand as Sentinel does it: a primary whose replica
// replicates through a proxy; the proxy starts dropping what the primary sends (the link stays
// up, so the primary still counts the replica, at its old offset); a send is written on the
// primary, its WAIT falls short (503 not_durable), and the worker, blocked on its read, reads
// the entry; the primary is SIGKILLed and the replica that never had the entry promoted; the
// client retries with the same client_msg_id and is answered 202 under a new id. PostgreSQL
// must then hold the message once, under the id the client was given. Before the fix the
// worker wrote the first id too: the WAIT after a read that blocked confirmed nothing
// (TestGroupBlockedReadWaitsForReplicas).
func TestRetryAfterUnreplicatedRead(t *testing.T) {
	testenv.Slow(t, "the failover by hand takes about 10 s")
	primary := testenv.StartValkey(t)
	link := startProxy(t, "replication", primary.Addr)
	replica := testenv.StartReplicaVia(t, primary, link.Listen)
	d := newDeployment(t)
	dsn := d.dsn
	start := func(addr string) (*proc, *proc, string) {
		d.valkey = []string{"VALKEY_ADDR=" + addr}
		// Clock ids, as under Sentinel: a counter would give the retry the lost id again.
		return d.pair(t, []string{"VALKEY_TIMEOUT=500ms", "INGEST_DURABILITY=replica", "INGEST_DURABILITY_TIMEOUT=200ms", "INGEST_IDS=clock"},
			[]string{"FLUSH_MIN_IDLE=2s", "VALKEY_TIMEOUT=2s", "FLUSH_WAIT_REPLICAS=1"})
	}
	in, w, base := start(primary.Addr)
	c := &client{base: base, http: keepAlive(3 * time.Second), l: newLedger()}
	ctx := t.Context()
	if _, err := c.api(0).Send(ctx, chatpipe.Draft{OwnerID: "bob", Username: "bob", Content: "warm-up"}); err != nil {
		t.Fatalf("warm-up send: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // the worker has written the warm-up and blocks on its next read

	if _, err := link.Toxics.AddToxicJson(strings.NewReader(`{"name":"hold","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)); err != nil {
		t.Fatal(err)
	}
	draft := chatpipe.Draft{OwnerID: "alice", Username: "alice", Content: "sent once", ClientMsgID: "once-1"}
	_, err := c.api(0).Send(ctx, draft)
	var nd *chatpipe.Error
	if !errors.As(err, &nd) || nd.Code != "not_durable" {
		t.Fatalf("send with the replica behind: %v, want 503 not_durable", err)
	}
	time.Sleep(time.Second) // the worker has read the entry (and, unfixed, written it)
	primary.Stop()
	link.Stop()
	in.kill()
	w.kill()
	// The failover: the replica, which never had the entry, becomes the primary; the old one
	// comes back empty as its replica (ingest's WAIT needs one).
	testenv.Do(t, replica.Client(t), "REPLICAOF", "NO", "ONE")
	primary.Restart()
	_, rport, _ := strings.Cut(replica.Addr, ":")
	testenv.Do(t, primary.Client(t), "REPLICAOF", "127.0.0.1", rport)
	_, _, base = start(replica.Addr)
	c.base = base
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	a, err := c.api(100).Send(rctx, draft)
	if err != nil {
		t.Fatalf("the retry after the failover: %v", err)
	}
	var rows map[int64]storedRow
	testenv.WaitFor(t, "the retried message in PostgreSQL", 20*time.Second, func() bool {
		rows = publicRows(t, dsn)
		_, ok := rows[a.CacheID]
		return ok
	})
	var ids []int64
	for id, r := range rows {
		if r.content == draft.Content {
			ids = append(ids, id)
		}
	}
	if len(ids) != 1 || ids[0] != a.CacheID {
		t.Fatalf("rows of the message: %v, want only %d (the id its retry was answered)", ids, a.CacheID)
	}
}
