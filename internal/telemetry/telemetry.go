// Package telemetry builds what both binaries log and measure with: a slog logger and a
// Prometheus registry with the Go and process collectors and chatpipe_build_info.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/chatpipe/chatpipe/internal/version"
)

// LogLevels and LogFormats are the accepted values of LOG_LEVEL and LOG_FORMAT.
var (
	LogLevels  = []string{"debug", "info", "warn", "error"}
	LogFormats = []string{"text", "json"}
)

// CheckLogLevel validates a LOG_LEVEL value.
func CheckLogLevel(v string) error { return oneOf(v, LogLevels) }

// CheckLogFormat validates a LOG_FORMAT value.
func CheckLogFormat(v string) error { return oneOf(v, LogFormats) }

func oneOf(v string, allowed []string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
}

// NewLogger returns a logger writing to w at level ("debug".."error") in format ("text" or "json"),
// with the component named on every line.
func NewLogger(w io.Writer, level, format, component string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if format == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("component", component)
}

// NewRegistry returns a registry holding the Go and process collectors and
// chatpipe_build_info{component,version,revision,goversion}, and the /metrics handler serving it
// (OpenMetrics enabled).
func NewRegistry(component string) (*prometheus.Registry, http.Handler) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	version, revision, goVersion := buildInfo()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "chatpipe_build_info",
		Help:        "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{"component": component, "version": version, "revision": revision, "goversion": goVersion},
	})
	info.Set(1)
	reg.MustRegister(info)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
	return reg, h
}

// Version returns the release and the VCS revision the binary was built from.
func Version() string {
	return version.Number + " (" + version.Revision() + ")"
}

func buildInfo() (release, revision, goVersion string) {
	release, revision, goVersion = version.Number, version.Revision(), "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
	}
	return
}
