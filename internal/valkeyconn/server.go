package valkeyconn

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Info is what chatpipe reads of a server's INFO: its mode and its memory.
type Info struct {
	// ServerMode is standalone, cluster or sentinel.
	ServerMode string
	// ClusterEnabled reports cluster_enabled:1.
	ClusterEnabled bool
	// Role is master or slave.
	Role string
	// UsedMemory and MaxMemory are in bytes; MaxMemory 0 means no limit.
	UsedMemory, MaxMemory int64
	// Policy is maxmemory-policy.
	Policy string
	// AOFEnabled reports appendonly yes.
	AOFEnabled bool
	// Replicas is connected_slaves: the replicas connected to a primary.
	Replicas int
}

// Evicting reports a memory policy that deletes keys when memory is full: the flush streams
// and the id counters would go with them (docs/ha.md).
func (i Info) Evicting() bool { return i.Policy != "" && i.Policy != "noeviction" }

// ReadInfo reads INFO server, replication, memory, persistence and cluster in one call. On a
// cluster it asks every primary and returns the one that matters most: an evicting policy if
// any node has one, else the node nearest its maxmemory.
func ReadInfo(ctx context.Context, c valkey.Client) (Info, error) {
	nodes := c.Nodes()
	if len(nodes) <= 1 {
		return readInfo(ctx, c)
	}
	var worst Info
	found := false
	for _, n := range nodes {
		i, err := readInfo(ctx, n)
		if err != nil {
			return Info{}, err
		}
		if !found || worse(i, worst) {
			worst, found = i, true
		}
	}
	return worst, nil
}

func readInfo(ctx context.Context, c valkey.Client) (Info, error) {
	s, err := c.Do(ctx, c.B().Info().Section("server", "replication", "memory", "persistence", "cluster").Build()).ToString()
	if err != nil {
		return Info{}, err
	}
	return parseInfo(s), nil
}

// worse reports whether node a is in a worse state than b: evicting first, then fuller.
func worse(a, b Info) bool {
	if a.Evicting() != b.Evicting() {
		return a.Evicting()
	}
	return fill(a) > fill(b)
}

func fill(i Info) float64 {
	if i.MaxMemory <= 0 {
		return 0
	}
	return float64(i.UsedMemory) / float64(i.MaxMemory)
}

func parseInfo(s string) Info {
	var i Info
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		switch k {
		case "server_mode", "redis_mode":
			if i.ServerMode == "" || k == "server_mode" {
				i.ServerMode = v
			}
		case "cluster_enabled":
			i.ClusterEnabled = v == "1"
		case "role":
			i.Role = v
		case "used_memory":
			i.UsedMemory, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory":
			i.MaxMemory, _ = strconv.ParseInt(v, 10, 64)
		case "maxmemory_policy":
			i.Policy = v
		case "aof_enabled":
			i.AOFEnabled = v == "1"
		case "connected_slaves":
			i.Replicas, _ = strconv.Atoi(v)
		}
	}
	return i
}

// Check reads the server's INFO and refuses a deployment chatpipe must not run on: a cluster
// or Sentinel reached in standalone mode, or an evicting memory policy unless AllowEviction.
// It waits out servers that are still loading.
func Check(ctx context.Context, c valkey.Client, cfg Config, log *slog.Logger) error {
	var info Info
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, max(cfg.Timeout, time.Second))
		var err error
		info, err = ReadInfo(cctx, c)
		cancel()
		if err == nil {
			break
		}
		if isPermanent(err) {
			return fmt.Errorf("reading the server's INFO: %w", err)
		}
		log.WarnContext(ctx, "valkey not ready yet, retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("reading the server's INFO: %w (last error: %w)", ctx.Err(), err)
		case <-time.After(min(time.Duration(attempt)*200*time.Millisecond, 2*time.Second)):
		}
	}
	where := cfg.Where()
	clustered := info.ClusterEnabled || info.ServerMode == "cluster"
	switch {
	case cfg.mode() == Cluster && !clustered:
		return &SetupError{"VALKEY_MODE", fmt.Sprintf("%s, but the server is not cluster-enabled: set VALKEY_MODE=standalone or sentinel", where)}
	case cfg.mode() == Cluster:
	case clustered:
		return &SetupError{"VALKEY_MODE", fmt.Sprintf("%s, but the server is cluster-enabled: set VALKEY_MODE=cluster with KEY_LAYOUT=partitioned", where)}
	case info.ServerMode == "sentinel":
		return &SetupError{"VALKEY_MODE", fmt.Sprintf("%s, but the server is a Sentinel: set VALKEY_MODE=sentinel and VALKEY_SENTINEL_MASTER", where)}
	}
	if err := CheckPolicy(info, cfg.AllowEviction); err != nil {
		return err
	}
	if info.Evicting() {
		log.WarnContext(ctx, "valkey evicts keys when full: accepted messages and ids can vanish (VALKEY_ALLOW_EVICTION=true)", "maxmemory_policy", info.Policy)
	}
	if info.MaxMemory == 0 {
		log.InfoContext(ctx, "valkey has no maxmemory: a long PostgreSQL outage fills the host's memory; set maxmemory with noeviction", "valkey", where)
	}
	return nil
}

// CheckPolicy refuses an evicting maxmemory-policy unless allowed.
func CheckPolicy(info Info, allow bool) error {
	if !info.Evicting() || allow {
		return nil
	}
	return &SetupError{"VALKEY_ALLOW_EVICTION", fmt.Sprintf("valkey's maxmemory-policy is %s: it evicts flush streams and id counters when memory is full, so accepted messages vanish and ids repeat; set maxmemory-policy noeviction on the server (or VALKEY_ALLOW_EVICTION=true to run anyway)", info.Policy)}
}

// CheckFsync refuses INGEST_DURABILITY=fsync on a server that cannot honour it: AOF off
// (WAITAOF would fail every call), or appendfsync other than always. Under everysec, Valkey
// 8.0's WAITAOF reports fsyncs that have not happened: 20 sequential SET + WAITAOF 1 0 0
// returned in 0.1 s here, where a real wait for everysec's fsync takes up to a second each.
func CheckFsync(ctx context.Context, c valkey.Client) error {
	info, err := ReadInfo(ctx, c)
	if err != nil {
		return fmt.Errorf("reading the server's INFO: %w", err)
	}
	if !info.AOFEnabled {
		return &SetupError{"INGEST_DURABILITY", "fsync needs the append-only file: set appendonly yes and appendfsync always on every Valkey node"}
	}
	kv, err := c.Do(ctx, c.B().ConfigGet().Parameter("appendfsync").Build()).AsStrMap()
	if err != nil {
		return &SetupError{"INGEST_DURABILITY", "fsync needs appendfsync always, and CONFIG GET appendfsync was refused (" + firstLine(err.Error()) + "): allow it, or use replica"}
	}
	if p := kv["appendfsync"]; p != "always" {
		return &SetupError{"INGEST_DURABILITY", fmt.Sprintf("fsync needs appendfsync always, the server has %q: under everysec Valkey 8.0's WAITAOF can report an fsync that has not happened", p)}
	}
	return nil
}

// CheckRecord records value under key unless a value is there, and refuses to run (a
// SetupError naming setting) when another value is: the layout and P are fixed when a
// deployment is created.
func CheckRecord(ctx context.Context, c valkey.Client, key, value, setting string) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res := c.DoMulti(cctx, c.B().Set().Key(key).Value(value).Nx().Build(), c.B().Get().Key(key).Build())
	got, err := res[1].ToString()
	if err != nil {
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if got != value {
		return &SetupError{setting, fmt.Sprintf("this deployment was created as %q (recorded in %s), not %q: the partitions are fixed at creation", got, key, value)}
	}
	return nil
}
