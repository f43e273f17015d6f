package chaos_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestMigrateToPartitioned follows the README's migration on one server: a backlog left in the
// single layout's streams by a stopped worker; workers restarted with KEY_LAYOUT=partitioned;
// a second ingest in the partitioned layout taking half the clients while the single-layout
// ingest keeps the other half; then the single-layout ingest stopped. Every message answered
// 202 by either is in PostgreSQL once with its content, the old streams are empty, and no id of
// one layout met one of the other.
func TestMigrateToPartitioned(t *testing.T) {
	testenv.Slow(t, "the migration run takes about 20 s")
	t.Parallel()
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	v := testenv.StartValkey(t, "--appendonly", "yes")
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: []string{"VALKEY_ADDR=" + v.Addr}, dsn: dsn}
	newIngest := func(name string, env ...string) (*proc, string) {
		p, base := d.ingest(t, name, env...)
		p.start(t)
		testenv.WaitReady(t, base+"/readyz", 20*time.Second)
		return p, base
	}
	newWorker := func(name string, env ...string) *proc {
		p := d.worker(t, name, append([]string{"FLUSH_TAIL_RETENTION=0"}, env...)...)
		p.start(t)
		return p
	}
	single, singleURL := newIngest("ingest-single", "INGEST_IDS=clock")
	oldWorker := newWorker("w-single")
	killOnCleanup(t, single, oldWorker)
	l := newLedger()
	var next atomic.Int64
	send := func(base string, n int) {
		c := &client{base: base, http: keepAlive(3 * time.Second), l: l}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range n / 8 {
					kind := "message"
					if i%5 == 0 {
						kind = "private_message"
					}
					c.send(kind, fmt.Sprintf("u%d", g), fmt.Sprintf("m%d", next.Add(1)), 30)
				}
			})
		}
		wg.Wait()
	}
	send(singleURL, 800)
	oldWorker.stop()
	send(singleURL, 800) // a backlog in the single layout's streams
	workers := []*proc{newWorker("w1", "KEY_LAYOUT=partitioned"), newWorker("w2", "KEY_LAYOUT=partitioned")}
	partitioned, partURL := newIngest("ingest-partitioned", "KEY_LAYOUT=partitioned")
	killOnCleanup(t, append(workers, partitioned)...)
	var both sync.WaitGroup
	both.Go(func() { send(singleURL, 800) })
	both.Go(func() { send(partURL, 800) })
	both.Wait()
	single.stop()
	send(partURL, 400)

	vc := v.Client(t)
	var flushStreams []string
	dead := map[string][]string{}
	for _, kind := range []string{"message", "private_message"} {
		flushStreams = append(flushStreams, "chatpipe:flush:"+kind)
		dead[kind] = append(dead[kind], "chatpipe:dead:"+kind)
		for k := range 16 {
			flushStreams = append(flushStreams, fmt.Sprintf("{cp%d}:flush:%s", k, kind))
			dead[kind] = append(dead[kind], fmt.Sprintf("{cp%d}:dead:%s", k, kind))
		}
	}
	waitDrained(t, vc, flushStreams...)
	for _, w := range workers {
		w.stop()
	}
	r := check(t, 3, dsn, vc, l, map[string]int{"switched from the single to the partitioned layout": 1}, workers, dead)
	if r.violations() > 0 {
		t.Errorf("the migration broke an invariant:\n  %s", strings.Join(r.examples, "\n  "))
	}
	below, above := 0, 0
	for _, kind := range []string{"message", "private_message"} {
		for id := range l.accepted[kind] {
			if id < 1<<52 {
				below++
			} else {
				above++
			}
		}
	}
	if below == 0 || above == 0 {
		t.Fatalf("%d ids from the single layout and %d from the partitioned one: want both", below, above)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []string{"chatpipe:flush:message", "chatpipe:flush:private_message"} {
		if n, _ := vc.Do(ctx, vc.B().Xlen().Key(s).Build()).AsInt64(); n != 0 {
			t.Errorf("%s still holds %d entries", s, n)
		}
	}
	t.Logf("%d messages with single-layout ids, %d with partitioned ids, all in PostgreSQL once", below, above)
}
