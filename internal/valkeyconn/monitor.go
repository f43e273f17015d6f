package valkeyconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valkey-io/valkey-go"
)

// Monitor polls the server's memory and policy, exports them as metrics, and tells readiness
// when the policy became an evicting one while chatpipe runs.
type Monitor struct {
	c        valkey.Client
	allow    bool
	interval time.Duration
	log      *slog.Logger

	used, limit, allowed prometheus.Gauge
	policy               *prometheus.GaugeVec

	mu   sync.Mutex
	info Info
	err  error
	seen bool
}

// NewMonitor returns a Monitor of c polling every interval (default 5s), registering its metrics
// on reg: chatpipe_valkey_memory_used_bytes, chatpipe_valkey_maxmemory_bytes,
// chatpipe_valkey_maxmemory_policy{policy} and chatpipe_valkey_eviction_allowed.
func NewMonitor(c valkey.Client, allowEviction bool, interval time.Duration, reg prometheus.Registerer, log *slog.Logger) (*Monitor, error) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	m := &Monitor{
		c: c, allow: allowEviction, interval: interval, log: log,
		used: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatpipe_valkey_memory_used_bytes",
			Help: "Memory Valkey uses (INFO used_memory)."}),
		limit: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatpipe_valkey_maxmemory_bytes",
			Help: "Valkey's maxmemory; 0 means no limit."}),
		allowed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "chatpipe_valkey_eviction_allowed",
			Help: "1 when VALKEY_ALLOW_EVICTION lets chatpipe run on an evicting maxmemory-policy."}),
		policy: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "chatpipe_valkey_maxmemory_policy",
			Help: "1 for Valkey's current maxmemory-policy; anything but noeviction can evict accepted messages."}, []string{"policy"}),
	}
	for _, col := range []prometheus.Collector{m.used, m.limit, m.allowed, m.policy} {
		if err := reg.Register(col); err != nil {
			return nil, err
		}
	}
	if allowEviction {
		m.allowed.Set(1)
	}
	return m, nil
}

// Run polls until ctx ends.
func (m *Monitor) Run(ctx context.Context) error {
	for {
		m.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.interval):
		}
	}
}

// Poll reads the server once and updates the metrics.
func (m *Monitor) Poll(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	info, err := ReadInfo(cctx, m.c)
	cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
	if err != nil {
		return
	}
	if info.Policy != m.info.Policy && info.Evicting() && !m.allow {
		m.log.ErrorContext(ctx, "valkey's maxmemory-policy now evicts keys: accepted messages can vanish; not ready until it is noeviction", "maxmemory_policy", info.Policy)
	}
	m.info, m.seen = info, true
	m.used.Set(float64(info.UsedMemory))
	m.limit.Set(float64(info.MaxMemory))
	m.policy.Reset()
	m.policy.WithLabelValues(info.Policy).Set(1)
}

// ErrEvicting is returned by Ready while the server's policy evicts keys.
var ErrEvicting = errors.New("valkey's maxmemory-policy evicts keys")

// Ready returns ErrEvicting (wrapped, with the policy) while the last poll saw an evicting
// policy that is not allowed; nil otherwise, also before the first poll or when it failed
// (reachability is readiness' own check).
func (m *Monitor) Ready() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.seen && m.info.Evicting() && !m.allow {
		return fmt.Errorf("%w: %s", ErrEvicting, m.info.Policy)
	}
	return nil
}

// Info returns what the last successful poll read.
func (m *Monitor) Info() Info {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.info
}
