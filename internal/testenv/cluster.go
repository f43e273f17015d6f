package testenv

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Cluster is a local Valkey Cluster: three primaries with a replica each, on loopback.
type Cluster struct {
	// Nodes are the six servers; the first three were the primaries at creation.
	Nodes []*Valkey
	// Addrs is the nodes' addresses, comma-separated: seed nodes for VALKEY_ADDR.
	Addrs string
}

// StartCluster starts six cluster-enabled servers (cluster-node-timeout 1000, the extra
// arguments given to each), joins them with valkey-cli --cluster create --cluster-replicas 1,
// and returns once every node reports cluster_state:ok.
func StartCluster(t testing.TB, args ...string) *Cluster {
	t.Helper()
	cli, err := lookBinary("valkey-cli", valkeyInstall)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{}
	var addrs []string
	for range 6 {
		n := StartValkey(t, append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-require-full-coverage", "no"}, args...)...)
		c.Nodes = append(c.Nodes, n)
		addrs = append(addrs, n.Addr)
	}
	c.Addrs = strings.Join(addrs, ",")
	create := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")...)
	if out, err := create.CombinedOutput(); err != nil {
		t.Fatalf("valkey-cli --cluster create: %v\n%s", err, lastLines(out, 10))
	}
	for _, n := range c.Nodes {
		nc := n.Client(t)
		WaitFor(t, "cluster_state:ok on "+n.Addr, 30*time.Second, func() bool {
			return strings.Contains(infoCluster(nc), "cluster_state:ok")
		})
	}
	return c
}
