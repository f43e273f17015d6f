package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Rejection reasons, the "reason" label of chatpipe_ingest_messages_rejected_total.
const (
	reasonRateLimited = "rate_limited"
	reasonInvalid     = "invalid"
	reasonBacklogFull = "backlog_full"
	reasonUnavailable = "unavailable"
	reasonDuplicate   = "duplicate"
	reasonValkeyFull  = "valkey_full"
)

type metrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	accepted    *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	script      *prometheus.HistogramVec
	valkeyError *prometheus.CounterVec
	notDurable  *prometheus.CounterVec
}

// Latency buckets from 250µs to 10s: ingest answers in about a millisecond when healthy.
var latencyBuckets = []float64{.00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_ingest_requests_total",
			Help: "HTTP requests answered, by route pattern and status class.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "chatpipe_ingest_request_duration_seconds",
			Help:                        "Time to answer an HTTP request, by route pattern.",
			Buckets:                     latencyBuckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"route"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_ingest_messages_accepted_total",
			Help: "Messages given a new cache id, by kind.",
		}, []string{"kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_ingest_messages_rejected_total",
			Help: "Messages not given a new cache id, by kind and reason (a duplicate gets its first id back).",
		}, []string{"kind", "reason"}),
		script: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        "chatpipe_ingest_valkey_duration_seconds",
			Help:                        "Time of one Valkey operation (script or read), by operation.",
			Buckets:                     latencyBuckets,
			NativeHistogramBucketFactor: 1.1,
		}, []string{"op"}),
		valkeyError: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_ingest_valkey_errors_total",
			Help: "Valkey operations that failed (unreachable, timeout or error reply), by operation.",
		}, []string{"op"}),
		notDurable: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chatpipe_ingest_messages_not_durable_total",
			Help: "Messages accepted (and counted in accepted_total) whose write was not confirmed durable in time: answered 503 not_durable, by kind.",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.accepted, m.rejected, m.script, m.valkeyError, m.notDurable} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, kind := range []string{"message", "private_message"} {
		m.accepted.WithLabelValues(kind)
		m.notDurable.WithLabelValues(kind)
		for _, r := range []string{reasonRateLimited, reasonInvalid, reasonBacklogFull, reasonUnavailable, reasonDuplicate, reasonValkeyFull} {
			m.rejected.WithLabelValues(kind, r)
		}
	}
	return m, nil
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts and times every request by its route pattern, never by its path, so that
// ids in paths cannot grow the label set.
func (m *metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		m.requests.WithLabelValues(route, strconv.Itoa(rec.status/100)+"xx").Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
