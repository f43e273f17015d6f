package flush

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestTrimHeldIsTheOldest: with many partition streams of one kind, the gauge shows the oldest
// trim point any of them holds, whichever consumer reported last.
func TestTrimHeldIsTheOldest(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m.trimHeld.set("p0:message", "message", now.Add(-time.Hour))
	m.trimHeld.set("p1:message", "message", time.Time{})
	m.trimHeld.set("p0:private_message", "private_message", time.Time{})
	m.trimHeld.set("p2:message", "message", now.Add(-time.Minute)) // reported last, younger
	got, err := testutil.GatherAndCount(reg, "chatpipe_flush_trim_held_seconds")
	if err != nil || got != 2 {
		t.Fatalf("%d series (%v), want one per kind", got, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "chatpipe_flush_trim_held_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			kind, v := s.GetLabel()[0].GetValue(), s.GetGauge().GetValue()
			switch {
			case kind == "message" && (v < 3600 || v > 3700):
				t.Errorf("message: %.0f s, want the oldest, about 3600", v)
			case kind == "private_message" && v != 0:
				t.Errorf("private_message: %.0f s, want 0 (nothing held)", v)
			case !strings.Contains("message private_message", kind):
				t.Errorf("unexpected stream label %q", kind)
			}
		}
	}
}
