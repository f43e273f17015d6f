package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// SentinelMaster is the name of the primary set of StartSentinel.
const SentinelMaster = "chatpipe"

// Sentinels is a primary with two replicas watched by three Sentinels, all on loopback.
type Sentinels struct {
	// Nodes are the data servers; Nodes[0] was the primary at start.
	Nodes []*Valkey
	// Sentinels are the three Sentinels.
	Sentinels []*Valkey
	// Addrs is the Sentinels' addresses, comma-separated, as VALKEY_ADDR takes them.
	Addrs string
	// alias maps an address in front of a node (SentinelOptions.PrimaryViaFunc) to the node.
	alias map[string]*Valkey
	// password is the Sentinels' password, if any.
	password string
}

// StartSentinel starts a primary (with the extra server arguments, given to every data node),
// two replicas and three Sentinels (quorum 2, down-after 1 s, failover timeout 5 s), and
// returns once both replicas are in sync and every Sentinel knows them all.
func StartSentinel(t testing.TB, args ...string) *Sentinels {
	t.Helper()
	return StartSentinelWith(t, SentinelOptions{Args: args})
}

// SentinelOptions configures StartSentinelWith.
type SentinelOptions struct {
	// Args are extra server arguments of every data node.
	Args []string
	// PrimaryViaFunc, when set, returns an address in front of the first primary — a proxy that
	// can slow it down — which the Sentinels monitor, the replicas replicate from and clients
	// are given. After a failover the Sentinels name the promoted node by its own address.
	PrimaryViaFunc func(primary string) string
	// SentinelPassword, when set, is required by the Sentinels (requirepass) and used between
	// them (sentinel sentinel-pass).
	SentinelPassword string
}

// StartSentinelWith is StartSentinel with options.
func StartSentinelWith(t testing.TB, o SentinelOptions) *Sentinels {
	t.Helper()
	s := &Sentinels{alias: map[string]*Valkey{}, password: o.SentinelPassword}
	primary := StartValkey(t, o.Args...)
	s.Nodes = append(s.Nodes, primary)
	host, port := "127.0.0.1", strconv.Itoa(primary.port)
	if o.PrimaryViaFunc != nil {
		via := o.PrimaryViaFunc(primary.Addr)
		s.alias[via] = primary
		host, port, _ = strings.Cut(via, ":")
	}
	for range 2 {
		s.Nodes = append(s.Nodes, StartValkey(t, append([]string{"--replicaof", host, port}, o.Args...)...))
	}
	pc := primary.Client(t)
	WaitFor(t, "two replicas in sync", 20*time.Second, func() bool {
		info := infoField(pc, "replication")
		return strings.Contains(info, "connected_slaves:2") && strings.Count(info, "state=online") == 2
	})
	var addrs []string
	for range 3 {
		dir := t.TempDir()
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("sentinel monitor %s %s %s 2\nsentinel down-after-milliseconds %s 1000\nsentinel failover-timeout %s 5000\nsentinel parallel-syncs %s 1\nsentinel resolve-hostnames yes\n",
			SentinelMaster, host, port, SentinelMaster, SentinelMaster, SentinelMaster)
		if o.SentinelPassword != "" {
			body += fmt.Sprintf("requirepass %s\nsentinel sentinel-pass %s\n", o.SentinelPassword, o.SentinelPassword)
		}
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		sv := launch(t, &Valkey{conf: conf})
		s.Sentinels = append(s.Sentinels, sv)
		addrs = append(addrs, sv.Addr)
	}
	s.Addrs = strings.Join(addrs, ",")
	for _, sv := range s.Sentinels {
		sc, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{sv.Addr}, Password: o.SentinelPassword, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			t.Fatalf("connecting to the Sentinel at %s: %v", sv.Addr, err)
		}
		t.Cleanup(sc.Close)
		WaitFor(t, "each Sentinel to know both replicas and the other Sentinels", 30*time.Second, func() bool {
			m := sentinelMaster(sc)
			return m["num-slaves"] == "2" && m["num-other-sentinels"] == "2"
		})
	}
	return s
}

// sentinelMaster returns SENTINEL MASTER's fields, or nil.
func sentinelMaster(c valkey.Client) map[string]string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	kv, err := c.Do(ctx, c.B().Arbitrary("SENTINEL", "MASTER", SentinelMaster).Build()).AsStrMap()
	if err != nil {
		return nil
	}
	return kv
}

func infoField(c valkey.Client, section string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Do(ctx, c.B().Info().Section(section).Build()).ToString()
	return s
}

// PrimaryAddr is the primary's address as the first Sentinel that answers sees it.
func (s *Sentinels) PrimaryAddr(t testing.TB) string {
	t.Helper()
	for _, sv := range s.Sentinels {
		if sv.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{sv.Addr}, Password: s.password, ForceSingleClient: true, DisableCache: true})
		if err != nil {
			cancel()
			continue
		}
		a, err := c.Do(ctx, c.B().SentinelGetMasterAddrByName().Master(SentinelMaster).Build()).AsStrSlice()
		c.Close()
		cancel()
		if err == nil && len(a) == 2 {
			return a[0] + ":" + a[1]
		}
	}
	t.Fatal("no Sentinel names a primary")
	return ""
}

// Primary is the data node the Sentinels name as primary.
func (s *Sentinels) Primary(t testing.TB) *Valkey {
	t.Helper()
	addr := s.PrimaryAddr(t)
	if n, ok := s.alias[addr]; ok {
		return n
	}
	for _, n := range s.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	t.Fatalf("the Sentinels name %s, no node of this test", addr)
	return nil
}

// WaitFailover waits until the Sentinels name a primary other than old, and that node says it
// is a primary.
func (s *Sentinels) WaitFailover(t testing.TB, old string, d time.Duration) *Valkey {
	t.Helper()
	var p *Valkey
	WaitFor(t, "the Sentinels to promote a replica", d, func() bool {
		addr := s.PrimaryAddr(t)
		if addr == old || s.alias[addr] != nil && s.alias[addr].Addr == old {
			return false
		}
		for _, n := range s.Nodes {
			if n.Addr == addr && n.cmd != nil {
				c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{addr}, ForceSingleClient: true, DisableCache: true})
				if err != nil {
					return false
				}
				defer c.Close()
				if strings.Contains(infoField(c, "replication"), "role:master") {
					p = n
					return true
				}
			}
		}
		return false
	})
	return p
}

func infoCluster(c valkey.Client) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, _ := c.Do(ctx, c.B().ClusterInfo().Build()).ToString()
	return s
}
