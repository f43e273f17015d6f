package history

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	pages        *prometheus.CounterVec
	coalesced    prometheus.Counter
	watermarkLag *prometheus.GaugeVec
}

func (m *metrics) register(reg prometheus.Registerer) error {
	m.pages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "chatpipe_history_pages_total",
		Help: "History pages read, by kind and by the source that served their messages: ring (the rings alone), backlog (flush streams alone), postgres, mixed, empty.",
	}, []string{"kind", "source"})
	m.coalesced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "chatpipe_history_coalesced_total",
		Help: "History requests answered by a read of the same page already in flight.",
	})
	m.watermarkLag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "chatpipe_history_watermark_lag_seconds",
		Help: "Age of the oldest message still in a flush stream (the watermark below which history reads PostgreSQL alone), at the last history read; it includes FLUSH_TAIL_RETENTION.",
	}, []string{"kind"})
	// Every series from the start, at zero, so dashboards and alerts see them before traffic.
	for _, kind := range []string{"message", "private_message"} {
		for _, src := range []string{"ring", "backlog", "postgres", "mixed", "empty"} {
			m.pages.WithLabelValues(kind, src)
		}
		m.watermarkLag.WithLabelValues(kind)
	}
	for _, c := range []prometheus.Collector{m.pages, m.coalesced, m.watermarkLag} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
