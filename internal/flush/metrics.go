package flush

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the flush worker's counters and histograms, labelled by stream kind (message or
// private_message), never by consumer, user or message.
type Metrics struct {
	read          *prometheus.CounterVec
	persisted     *prometheus.CounterVec
	deletes       *prometheus.CounterVec
	edits         *prometheus.CounterVec
	reactions     *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	batchSize     *prometheus.HistogramVec
	flushDuration *prometheus.HistogramVec
	retries       *prometheus.CounterVec
	reclaimed     *prometheus.CounterVec
	lost          *prometheus.CounterVec
	endToEnd      *prometheus.HistogramVec
	trimmed       *prometheus.CounterVec
	// The PostgreSQL standbys that trimming waits for (Config.Standbys).
	standbysWanted    prometheus.Gauge
	standbysReplaying prometheus.Gauge
	standbyLag        prometheus.Gauge
	trimHeld          *heldAges
}

// Dead-letter reasons, the "reason" label of chatpipe_flush_dead_lettered_total.
const (
	ReasonDecode   = "decode"
	ReasonRejected = "rejected"
	ReasonPoison   = "poison"
	// ReasonIDReused: the entry's cache id is stored in PostgreSQL for another message (an id
	// given twice: a Valkey that lost its counter, or a failover to a replica behind it).
	ReasonIDReused = "id_reused"
)

// NewMetrics registers the metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	stream := []string{"stream"}
	m := &Metrics{
		read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_entries_read_total",
			Help: "Flush-stream entries read by this worker, new or reclaimed.",
		}, stream),
		persisted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_rows_persisted_total",
			Help: "Rows inserted into PostgreSQL (redeliveries insert none).",
		}, stream),
		deletes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_deletes_applied_total",
			Help: "Deletions applied (tombstone recorded, row removed if present).",
		}, stream),
		edits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_edits_applied_total",
			Help: "Edits that changed a row (or wrote it ahead of its insert); an edit older than the stored version, or of a deleted message, changes nothing.",
		}, stream),
		reactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_reactions_applied_total",
			Help: "Messages whose reaction counts a batch changed; an older reaction than the stored counts, or one of a deleted message, changes nothing.",
		}, stream),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_dead_lettered_total",
			Help: "Entries moved to the dead-letter stream, by reason (decode, rejected, poison).",
		}, []string{"stream", "reason"}),
		batchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "chatpipe_flush_batch_size",
			Help:                        "Entries per written batch.",
			Buckets:                     []float64{1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000},
			NativeHistogramBucketFactor: 1.1,
		}, stream),
		flushDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "chatpipe_flush_duration_seconds",
			Help:                        "Time to write and ack one batch, retries included.",
			Buckets:                     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			NativeHistogramBucketFactor: 1.1,
		}, stream),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_transient_retries_total",
			Help: "Batch writes retried after a transient error, by SQLSTATE class (or network, timeout).",
		}, []string{"stream", "class"}),
		reclaimed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_entries_reclaimed_total",
			Help: "Entries claimed from idle consumers (XAUTOCLAIM).",
		}, stream),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_entries_lost_total",
			Help: "Pending entries found deleted from the stream before they were persisted.",
		}, stream),
		endToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "chatpipe_flush_end_to_end_seconds",
			Help:                        "From enqueue (the stream id's time) to the row committed.",
			Buckets:                     []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
			NativeHistogramBucketFactor: 1.1,
		}, stream),
		trimmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_flush_entries_trimmed_total",
			Help: "Entries trimmed from a flush stream after every group acked them.",
		}, stream),
		standbysWanted: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatpipe_flush_pg_standbys_wanted",
			Help: "PostgreSQL standbys that must replay a commit before its entries are trimmed (FLUSH_PG_STANDBYS).",
		}),
		standbysReplaying: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatpipe_flush_pg_standbys_replaying",
			Help: "Of those, standbys streaming from the primary that report a replay position.",
		}),
		standbyLag: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chatpipe_flush_pg_standby_replay_lag_seconds",
			Help: "Largest replay lag of those standbys (commit to replay, apply delay included).",
		}),
		trimHeld: &heldAges{
			desc: prometheus.NewDesc("chatpipe_flush_trim_held_seconds",
				"Age of the oldest trim point waiting for the PostgreSQL standbys to replay it, over the streams of a kind (0: none waits).",
				[]string{"stream"}, nil),
			since: map[string]heldSince{},
		},
	}
	for _, c := range []prometheus.Collector{m.read, m.persisted, m.deletes, m.edits, m.reactions, m.deadLettered, m.batchSize, m.flushDuration, m.retries, m.reclaimed, m.lost, m.endToEnd, m.trimmed,
		m.standbysWanted, m.standbysReplaying, m.standbyLag, m.trimHeld} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// init creates the series of a stream so that dashboards show zeros, not gaps.
func (m *Metrics) init(stream string) {
	for _, v := range []*prometheus.CounterVec{m.read, m.persisted, m.deletes, m.edits, m.reactions, m.reclaimed, m.lost, m.trimmed} {
		v.WithLabelValues(stream)
	}
	for _, r := range []string{ReasonDecode, ReasonRejected, ReasonPoison, ReasonIDReused} {
		m.deadLettered.WithLabelValues(stream, r)
	}
	// The classes seen in practice; others appear when they first occur.
	for _, c := range []string{"08", "40", "53", "57", "network", "timeout"} {
		m.retries.WithLabelValues(stream, c)
	}
}

// heldAges is chatpipe_flush_trim_held_seconds: in the partitioned layout many consumers of one
// kind hold trim points, each on its own partition stream, and the gauge must show the oldest
// of them, not the last one set. Each consumer reports its own; a scrape takes the maximum.
type heldAges struct {
	desc  *prometheus.Desc
	mu    sync.Mutex
	since map[string]heldSince // by stream key
}

type heldSince struct {
	kind string
	at   time.Time // zero: nothing held
}

// set records the time of the oldest trim point key holds (zero: none).
func (h *heldAges) set(key, kind string, at time.Time) {
	h.mu.Lock()
	h.since[key] = heldSince{kind: kind, at: at}
	h.mu.Unlock()
}

func (h *heldAges) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *heldAges) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	oldest := map[string]float64{}
	for _, s := range h.since {
		age := 0.0
		if !s.at.IsZero() {
			age = time.Since(s.at).Seconds()
		}
		oldest[s.kind] = max(oldest[s.kind], age)
	}
	h.mu.Unlock()
	for kind, age := range oldest {
		ch <- prometheus.MustNewConstMetric(h.desc, prometheus.GaugeValue, age, kind)
	}
}
