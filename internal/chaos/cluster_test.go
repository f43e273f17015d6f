package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestChaosCluster is the partitioned layout on a real local cluster (3 primaries + 3
// replicas): two ingest replicas (INGEST_DURABILITY=replica) and two workers
// (FLUSH_WAIT_REPLICAS=1) in cluster mode from two seed nodes, 2×16 clients for 24 s with 20 %
// private messages; a worker SIGKILLed at 4 s, one primary SIGKILLed at 8 s and restarted 6 s
// later, PostgreSQL restarted at 17 s. The checker then reads every partition's streams: every
// message answered 202 in PostgreSQL once with its own content, no id answered 202 to two
// messages; the rings have no hole and the rate limit is shared.
func TestChaosCluster(t *testing.T) {
	testenv.Slow(t, "the cluster run takes about 45 s")
	runPartitioned(t, true)
}

// TestChaosPartitionedStandalone is the same run, same checks, in the partitioned layout on
// one standalone server (AOF, appendfsync always) that is SIGKILLed and restarted instead of a
// primary; durability none and no replica wait (there is no replica).
func TestChaosPartitionedStandalone(t *testing.T) {
	testenv.Slow(t, "the partitioned run takes about 40 s")
	runPartitioned(t, false)
}

func runPartitioned(t *testing.T, cluster bool) {
	const (
		downFor    = 6 * time.Second
		partitions = 16
	)
	// 24 s in make test; make chaos passes CHAOS_DURATION (the long run), the faults spread
	// over it in the same proportions.
	duration := 24 * time.Second
	if _, d := settings(); os.Getenv("CHAOS_DURATION") != "" && d > duration {
		duration = d
	}
	killAt := duration / 3
	seed := seedOr(2)
	t.Logf("seed %d (replay: CHAOS_SEED=%d)", seed, seed)
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	var (
		victim     *testenv.Valkey
		all        []string
		clusterEnv = []string{"KEY_LAYOUT=partitioned", fmt.Sprintf("KEY_PARTITIONS=%d", partitions)}
		durability = []string{"INGEST_DURABILITY=replica", "INGEST_DURABILITY_TIMEOUT=200ms"}
		waitRepl   = "FLUSH_WAIT_REPLICAS=1"
	)
	if cluster {
		cl := testenv.StartCluster(t)
		all = strings.Split(cl.Addrs, ",")
		victim = cl.Nodes[0] // a primary at creation
		clusterEnv = append(clusterEnv, "VALKEY_MODE=cluster", "VALKEY_ADDR="+strings.Join(all[:2], ","))
	} else {
		victim = testenv.StartValkey(t, "--appendonly", "yes", "--appendfsync", "always")
		all = []string{victim.Addr}
		clusterEnv = append(clusterEnv, "VALKEY_ADDR="+victim.Addr)
		durability, waitRepl = []string{"INGEST_DURABILITY=none"}, "FLUSH_WAIT_REPLICAS=0"
	}
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: clusterEnv, dsn: dsn}
	var procs, workers []*proc
	var bases []string
	for i := range 2 {
		in, base := d.ingest(t, fmt.Sprintf("ingest%d", i), append([]string{"VALKEY_TIMEOUT=500ms", "DATABASE_URL=" + dsn}, durability...)...)
		in.start(t)
		procs = append(procs, in)
		bases = append(bases, base)
	}
	for i := range 2 {
		w := d.worker(t, fmt.Sprintf("w%d", i), "FLUSH_MIN_IDLE=2s", "VALKEY_TIMEOUT=2s", waitRepl)
		w.start(t)
		workers = append(workers, w)
	}
	killOnCleanup(t, append(workers, procs...)...)
	for _, b := range bases {
		testenv.WaitReady(t, b+"/readyz", 30*time.Second)
	}

	l := newLedger()
	// The public messages go to 50 channels: the checker finds each in PostgreSQL in its own.
	channels := newChannelSet(50)
	clients := []*client{{base: bases[0], http: keepAlive(3 * time.Second), l: l, channels: channels}, {base: bases[1], http: keepAlive(3 * time.Second), l: l, channels: channels}}
	var killed, firstAfter atomic.Int64
	l.onAccept = func() {
		if killed.Load() != 0 && firstAfter.Load() == 0 {
			firstAfter.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
	start := time.Now()
	loadCtx, stopLoad := context.WithTimeout(context.Background(), duration)
	defer stopLoad()
	var load sync.WaitGroup
	var next atomic.Int64
	for g := range 32 {
		grng := rand.New(rand.NewPCG(seed, uint64(g+1)))
		c := clients[g%2]
		load.Go(func() {
			for loadCtx.Err() == nil {
				token := fmt.Sprintf("t%d", next.Add(1))
				owner := fmt.Sprintf("u%d", grng.IntN(200))
				kind := "message"
				if grng.Float64() < 0.2 {
					kind = "private_message"
				}
				c.send(kind, owner, token, 150)
			}
		})
	}
	faults := map[string]int{}
	time.Sleep(time.Until(start.Add(duration / 6)))
	workers[1].kill()
	time.Sleep(300 * time.Millisecond)
	workers[1].start(t)
	faults["worker SIGKILL + restart"]++
	time.Sleep(time.Until(start.Add(killAt)))
	victim.Stop()
	killed.Store(time.Now().UnixNano())
	faults["valkey node SIGKILLed"]++
	time.Sleep(downFor)
	victim.Restart()
	faults["valkey node restarted 6 s later"]++
	time.Sleep(time.Until(start.Add(duration * 17 / 24)))
	testenv.RestartPostgres(t, 2*time.Second)
	faults["postgres restart"]++
	load.Wait()
	stopLoad()
	if f := firstAfter.Load(); f == 0 {
		t.Error("no message was accepted after the kill")
	} else {
		t.Logf("first 202 %s after the kill", time.Duration(f-killed.Load()).Round(10*time.Millisecond))
	}

	vc, err := valkey.NewClient(valkey.ClientOption{InitAddress: all, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer vc.Close()
	var flushStreams []string
	dead := map[string][]string{}
	for _, kind := range []string{"message", "private_message"} {
		for k := range partitions {
			flushStreams = append(flushStreams, fmt.Sprintf("{cp%d}:flush:%s", k, kind))
			dead[kind] = append(dead[kind], fmt.Sprintf("{cp%d}:dead:%s", k, kind))
		}
		dead[kind] = append(dead[kind], "chatpipe:dead:"+kind)
	}
	if !cluster {
		// The single layout's streams, drained too (empty here).
		flushStreams = append(flushStreams, "chatpipe:flush:message", "chatpipe:flush:private_message")
	}
	waitDrained(t, vc, flushStreams...)
	for _, w := range workers {
		w.stop()
	}
	r := check(t, seed, dsn, vc, l, faults, workers, dead)
	if r.messages == 0 {
		t.Fatal("no message was accepted: the run proved nothing")
	}
	if r.violations() > 0 {
		t.Errorf("invariants violated on the cluster:\n  %s", strings.Join(r.examples, "\n  "))
	}
	for _, p := range append(procs, workers...) {
		if logs := p.logs.String(); strings.Contains(logs, "panic") || strings.Contains(logs, "CROSSSLOT") {
			t.Errorf("%s panicked or sent a cross-slot command:\n%s", p.name, tail(logs, 20))
		}
	}
	ringsHaveNoHoles(t, bases[0], l)
	historyPerChannel(t, bases[1], l, channels)
	rateLimitShared(t, bases)
}

// historyPerChannel: after the faults and the drain, every channel's full history scans, both
// ways, hold each of its messages answered 202 (and not deleted) once, in order, and nothing
// else but messages whose sends got no definite answer (a 202 lost to a failover).
func historyPerChannel(t *testing.T, base string, l *ledger, channels *channelSet) {
	t.Helper()
	hc := keepAlive(10 * time.Second)
	byChannel := l.byChannel()
	bad := 0
	for _, ch := range channels.list() {
		var want []int64
		for _, id := range byChannel[ch] {
			if !l.deleted[id] {
				want = append(want, id)
			}
		}
		for _, backward := range []bool{true, false} {
			got := testenv.ScanHistory(t, hc, base, "/v1/channels/"+ch+"/messages/history", backward, 200)
			var ids []int64
			for _, m := range got {
				token := strings.TrimPrefix(m.Data.Content, "chaos ")
				switch {
				case m.Data.ChannelID != ch:
					bad++
				case l.accepted["message"][m.CacheID] == token:
					ids = append(ids, m.CacheID)
				case !l.unknown[token]:
					bad++ // neither accepted with this id nor of an unanswered send
				}
			}
			if !slices.Equal(ids, want) {
				t.Errorf("channel %s, backward %t: %d of its %d messages, in order", ch, backward, len(ids), len(want))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d history entries belong to no send of their channel", bad)
	}
}

// ringsHaveNoHoles: the busiest channel's ring's newest 50 (read through ingest) are in
// ascending id order with no message answered 202 missing between them; so is a user's private
// ring.
func ringsHaveNoHoles(t *testing.T, base string, l *ledger) {
	t.Helper()
	get := func(path string) []int64 {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct {
			Messages []struct {
				CacheID int64 `json:"cache_id"`
			} `json:"messages"`
		}
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d, %v", path, res.StatusCode, err)
		}
		ids := make([]int64, len(body.Messages))
		for i, m := range body.Messages {
			ids[i] = m.CacheID
		}
		return ids
	}
	holes := func(what string, ring []int64, accepted []int64) {
		if len(ring) == 0 {
			t.Fatalf("%s is empty", what)
		}
		if !slices.IsSorted(ring) {
			t.Fatalf("%s is not in ascending id order: %v", what, ring)
		}
		in := map[int64]bool{}
		for _, id := range ring {
			in[id] = true
		}
		for _, id := range accepted {
			if id >= ring[0] && id <= ring[len(ring)-1] && !in[id] {
				t.Fatalf("%s misses accepted message %d between %d and %d", what, id, ring[0], ring[len(ring)-1])
			}
		}
	}
	// The busiest channel's ring, one key in its channel's partition.
	var busiest string
	byChannel := l.byChannel()
	for ch, ids := range byChannel {
		if len(ids) > len(byChannel[busiest]) {
			busiest = ch
		}
	}
	var public []int64
	for _, id := range byChannel[busiest] {
		if !l.deleted[id] {
			public = append(public, id)
		}
	}
	ring := get("/v1/channels/" + busiest + "/messages/recent?limit=50")
	if len(ring) != min(50, len(public)) {
		t.Fatalf("the ring of channel %s holds %d, want %d", busiest, len(ring), min(50, len(public)))
	}
	holes("the ring of channel "+busiest, ring, public)
	users := l.privateUsers()
	if len(users) == 0 {
		t.Fatal("no private message was accepted")
	}
	for _, u := range users[:min(3, len(users))] {
		holes("the private ring of "+u.name, get("/v1/users/"+u.name+"/private-messages/recent?limit=50"), u.ids)
	}
	t.Logf("ring of channel %s: %d..%d (%d entries), no hole", busiest, ring[0], ring[len(ring)-1], len(ring))
}

// rateLimitShared: PUT /v1/rate-limit on one ingest replica; 8 messages of one user sent
// alternately to both get five 202 and three 429.
func rateLimitShared(t *testing.T, bases []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, bases[0]+"/v1/rate-limit", strings.NewReader(`{"limit":5,"window_seconds":60}`))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("PUT /v1/rate-limit: %v %v", res, err)
	}
	res.Body.Close()
	counts := map[int]int{}
	for i := range 8 {
		res, err := http.Post(bases[i%2]+"/v1/messages", "application/json", strings.NewReader(`{"owner_id":"limited","content":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		drain(res)
		counts[res.StatusCode]++
	}
	if counts[http.StatusAccepted] != 5 || counts[http.StatusTooManyRequests] != 3 {
		t.Fatalf("8 messages alternately to both replicas after PUT 5/60s: %v, want five 202 and three 429", counts)
	}
}
