package testenv

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

func TestStartSentinelFailsOver(t *testing.T) {
	Slow(t, "starts six servers and waits for a failover")
	t.Parallel()
	s := StartSentinel(t)
	old := s.Primary(t)
	if old != s.Nodes[0] {
		t.Fatalf("primary %s, want the first node %s", old.Addr, s.Nodes[0].Addr)
	}
	if n := strings.Count(s.Addrs, ","); n != 2 {
		t.Fatalf("Addrs %q: want three Sentinels", s.Addrs)
	}
	old.Stop()
	start := time.Now()
	p := s.WaitFailover(t, old.Addr, 20*time.Second)
	t.Logf("failover to %s in %s", p.Addr, time.Since(start).Round(10*time.Millisecond))
	if p == old {
		t.Fatal("the stopped primary is still named")
	}
}

func TestStartCluster(t *testing.T) {
	Slow(t, "starts six cluster nodes")
	t.Parallel()
	c := StartCluster(t)
	cl, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{c.Nodes[0].Addr}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if n := len(cl.Nodes()); n != 3 {
		t.Fatalf("a cluster client from one seed sees %d primaries, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nodes, err := c.Nodes[0].Client(t).Do(ctx, cl.B().ClusterNodes().Build()).ToString()
	if err != nil || strings.Count(strings.TrimSpace(nodes), "\n")+1 != 6 || strings.Count(nodes, "slave") != 3 {
		t.Fatalf("CLUSTER NODES: %v\n%s\nwant 3 primaries and 3 replicas", err, nodes)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		if err := cl.Do(ctx, cl.B().Set().Key(k).Value("1").Build()).Error(); err != nil {
			t.Fatalf("SET %s on the cluster: %v", k, err)
		}
	}
}
