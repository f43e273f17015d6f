package tail

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	subscribers *prometheus.GaugeVec
	dropped     prometheus.Counter
	refused     prometheus.Counter
	tooOld      prometheus.Counter
	readErrors  prometheus.Counter
	events      prometheus.Counter
	takes       prometheus.Counter
}

func (m *metrics) register(reg prometheus.Registerer) error {
	m.subscribers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "chatpipe_tail_subscribers",
		Help: "Live-tail (SSE) subscribers connected to this replica, by kind.",
	}, []string{"kind"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_dropped_total",
		Help: "Live-tail subscribers disconnected because they fell behind (they resume from their last event).",
	})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_refused_total",
		Help: "Live-tail subscriptions refused because the replica serves INGEST_TAIL_MAX already.",
	})
	m.tooOld = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_cursor_too_old_total",
		Help: "Live-tail resumes refused because entries after the cursor were trimmed (410 cursor_too_old).",
	})
	m.readErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_read_errors_total",
		Help: "Failed stream reads of the live tail's readers (retried from the same entry).",
	})
	m.events = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_events_total",
		Help: "Live-tail events handed to subscribers (each once per subscriber).",
	})
	m.takes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_tail_writes_total",
		Help: "Groups of events handed to subscribers, each written to its client in one write; events_total / writes_total is how many events a write carries.",
	})
	for _, kind := range []string{"message", "private_message"} {
		m.subscribers.WithLabelValues(kind) // at zero from the start
	}
	for _, c := range []prometheus.Collector{m.subscribers, m.dropped, m.refused, m.tooOld, m.readErrors, m.events, m.takes} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
