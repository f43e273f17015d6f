package streams

import (
	"context"
	_ "embed"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/lua"
)

//go:embed leader.lua
var leaderSrc string

var leaderScript = lua.NewScript("leader", leaderSrc)

// QueueMonitor exports the state of the flush streams (length, lag, pending, oldest pending
// age, dead letters, consumers). Every replica runs one, but only the holder of a lease in
// Valkey exports the gauges, so that sums over replicas count each stream once; when the
// holder dies its lease expires and another replica takes over.
type QueueMonitor struct {
	c        valkey.Client
	streams  []keyspace.FlushStream
	lease    string
	group    string
	replica  string
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	leader bool
	stats  map[keyspace.FlushStream]queueStats

	descs map[string]*prometheus.Desc
}

type queueStats struct {
	length, lag, pending, dead, consumers float64
	oldestAge                             float64
}

// NewQueueMonitor returns a monitor of the flush streams for group, refreshed every interval
// (default 5s); the gauges are labelled by stream kind and partition ("" in the single
// layout). lease is the key of the lease; replica names this process in it. Each refresh
// costs four cheap calls per stream, pipelined.
func NewQueueMonitor(c valkey.Client, flushStreams []keyspace.FlushStream, lease, group, replica string, interval time.Duration, log *slog.Logger) *QueueMonitor {
	if interval == 0 {
		interval = 5 * time.Second
	}
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"stream", "partition"}, nil)
	}
	return &QueueMonitor{
		c: c, streams: flushStreams, lease: lease, group: group, replica: replica, interval: interval, log: log,
		stats: map[keyspace.FlushStream]queueStats{},
		descs: map[string]*prometheus.Desc{
			"length":    d("chatpipe_queue_stream_length", "Entries in the flush stream (XLEN)."),
			"lag":       d("chatpipe_queue_group_lag", "Entries the flush workers' group has not read yet."),
			"pending":   d("chatpipe_queue_pending", "Entries read but not yet acked."),
			"oldest":    d("chatpipe_queue_oldest_pending_age_seconds", "Age (since enqueue) of the oldest pending entry; 0 when none."),
			"dead":      d("chatpipe_queue_dead_letters", "Entries in the dead-letter stream."),
			"consumers": d("chatpipe_queue_consumers", "Consumers in the flush workers' group."),
			"leader":    prometheus.NewDesc("chatpipe_queue_monitor_leader", "1 on the replica that exports the queue gauges.", nil, nil),
		},
	}
}

// Run refreshes the lease and the stats until ctx ends.
func (q *QueueMonitor) Run(ctx context.Context) error {
	t := time.NewTicker(q.interval)
	defer t.Stop()
	for {
		q.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (q *QueueMonitor) refresh(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, q.interval)
	defer cancel()
	lease := strconv.FormatInt((3 * q.interval).Milliseconds(), 10)
	n, err := leaderScript.Exec(cctx, q.c, []string{q.lease}, []string{q.replica, lease}).AsInt64()
	if err != nil {
		q.log.DebugContext(ctx, "queue monitor lease failed", "err", err)
	}
	leader := err == nil && n == 1
	stats := map[keyspace.FlushStream]queueStats{}
	if leader {
		for _, fs := range q.streams {
			s, err := q.read(cctx, fs)
			if err != nil {
				q.log.DebugContext(ctx, "reading queue state failed", "stream", fs.Stream, "err", err)
				continue
			}
			stats[fs] = s
		}
	}
	q.mu.Lock()
	q.leader, q.stats = leader, stats
	q.mu.Unlock()
}

func (q *QueueMonitor) read(ctx context.Context, fs keyspace.FlushStream) (queueStats, error) {
	st, err := ReadQueue(ctx, q.c, fs, q.group)
	if err != nil {
		return queueStats{}, err
	}
	return queueStats{length: float64(st.Length), lag: float64(st.Lag), pending: float64(st.Pending),
		dead: float64(st.DeadLetters), consumers: float64(st.Consumers), oldestAge: st.OldestPendingAge.Seconds()}, nil
}

// QueueState is where a flush stream and its workers' group stand.
type QueueState struct {
	Length, Lag, Pending, DeadLetters, Consumers int64
	// LastDelivered is the group's last-delivered id; "" when there is no group.
	LastDelivered string
	// OldestPendingAge is the age (since enqueue) of the oldest entry read and not acked; 0 when
	// none.
	OldestPendingAge time.Duration
}

// ReadQueue reads fs's state for group in one pipelined round trip of four cheap calls (XLEN
// twice, XINFO GROUPS, the XPENDING summary): never a scan of the stream.
func ReadQueue(ctx context.Context, c valkey.Client, fs keyspace.FlushStream, group string) (QueueState, error) {
	res := c.DoMulti(ctx,
		c.B().Xlen().Key(fs.Stream).Build(),
		c.B().Xlen().Key(fs.DeadLetter).Build(),
		c.B().XinfoGroups().Key(fs.Stream).Build(),
		c.B().Xpending().Key(fs.Stream).Group(group).Build(),
	)
	var s QueueState
	var err error
	if s.Length, err = res[0].AsInt64(); err != nil {
		return s, err
	}
	s.DeadLetters, _ = res[1].AsInt64()
	groups, _ := res[2].ToArray()
	for _, g := range groups {
		m, err := g.AsMap()
		if err != nil {
			continue
		}
		name := m["name"]
		if n, _ := name.ToString(); n != group {
			continue
		}
		lag, pending, consumers, last := m["lag"], m["pending"], m["consumers"], m["last-delivered-id"]
		s.Lag, _ = lag.AsInt64()
		s.Pending, _ = pending.AsInt64()
		s.Consumers, _ = consumers.AsInt64()
		s.LastDelivered, _ = last.ToString()
	}
	if summary, err := res[3].ToArray(); err == nil && len(summary) >= 2 {
		if minID, err := summary[1].ToString(); err == nil {
			if t, ok := IDTime(minID); ok {
				s.OldestPendingAge = max(0, time.Since(t))
			}
		}
	}
	return s, nil
}

// ReadConsumers lists the consumers of group on stream (XINFO CONSUMERS).
func ReadConsumers(ctx context.Context, c valkey.Client, stream, group string) ([]ConsumerInfo, error) {
	rows, err := c.Do(ctx, c.B().XinfoConsumers().Key(stream).Group(group).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	out := make([]ConsumerInfo, 0, len(rows))
	for _, r := range rows {
		m, err := r.AsMap()
		if err != nil {
			return nil, err
		}
		name, pending, idle := m["name"], m["pending"], m["idle"]
		n, _ := name.ToString()
		p, _ := pending.AsInt64()
		i, _ := idle.AsInt64()
		out = append(out, ConsumerInfo{Name: n, Pending: p, Idle: time.Duration(i) * time.Millisecond})
	}
	return out, nil
}

// Describe implements prometheus.Collector.
func (q *QueueMonitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range q.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the gauges on the lease holder, only the leader
// flag elsewhere.
func (q *QueueMonitor) Collect(ch chan<- prometheus.Metric) {
	q.mu.Lock()
	defer q.mu.Unlock()
	leader := 0.0
	if q.leader {
		leader = 1
	}
	ch <- prometheus.MustNewConstMetric(q.descs["leader"], prometheus.GaugeValue, leader)
	for fs, s := range q.stats {
		for key, v := range map[string]float64{"length": s.length, "lag": s.lag, "pending": s.pending, "oldest": s.oldestAge, "dead": s.dead, "consumers": s.consumers} {
			ch <- prometheus.MustNewConstMetric(q.descs[key], prometheus.GaugeValue, v, fs.Kind.String(), fs.Partition)
		}
	}
}
