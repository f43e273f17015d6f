// Package opscheck checks the operations files against the code: the Grafana dashboards parse
// strictly, their PromQL parses, and every metric a dashboard or an alert rule names is one the
// binaries export. Its tests run these checks, promtool's, and the compose file's in make test.
package opscheck

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Dashboard is the part of a Grafana dashboard that chatpipe writes. Decoding rejects fields
// outside it, so that a typo in a key is an error, not a silently ignored setting.
type Dashboard struct {
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	Description   string          `json:"description"`
	Tags          []string        `json:"tags"`
	SchemaVersion int             `json:"schemaVersion"`
	Version       int             `json:"version"`
	Editable      bool            `json:"editable"`
	Time          json.RawMessage `json:"time"`
	Refresh       string          `json:"refresh"`
	Timezone      string          `json:"timezone"`
	Templating    json.RawMessage `json:"templating"`
	Annotations   json.RawMessage `json:"annotations"`
	Panels        []Panel         `json:"panels"`
}

// Panel is one dashboard panel.
type Panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Description string          `json:"description"`
	Datasource  Datasource      `json:"datasource"`
	GridPos     json.RawMessage `json:"gridPos"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Options     json.RawMessage `json:"options"`
	Targets     []Target        `json:"targets"`
}

// Datasource names a provisioned data source.
type Datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// Target is one query of a panel.
type Target struct {
	RefID        string     `json:"refId"`
	Datasource   Datasource `json:"datasource"`
	Expr         string     `json:"expr"`
	LegendFormat string     `json:"legendFormat"`
}

// ParseDashboard decodes a dashboard strictly and checks what Grafana needs from it.
func ParseDashboard(raw []byte, datasourceUID string) (*Dashboard, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var d Dashboard
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("data after the dashboard")
	}
	if d.UID == "" || d.Title == "" || len(d.Panels) == 0 {
		return nil, fmt.Errorf("dashboard needs a uid, a title and panels")
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		switch {
		case ids[p.ID]:
			return nil, fmt.Errorf("panel id %d twice", p.ID)
		case p.Title == "" || p.Description == "":
			return nil, fmt.Errorf("panel %d needs a title and a description", p.ID)
		case p.Datasource.UID != datasourceUID:
			return nil, fmt.Errorf("panel %q uses data source %q, not the provisioned %q", p.Title, p.Datasource.UID, datasourceUID)
		case len(p.Targets) == 0:
			return nil, fmt.Errorf("panel %q has no query", p.Title)
		}
		ids[p.ID] = true
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) == "" {
				return nil, fmt.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
	return &d, nil
}

// Exprs returns every query of the dashboard with Grafana's variables replaced by values
// PromQL accepts.
func (d *Dashboard) Exprs() []string {
	var out []string
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out = append(out, Substitute(t.Expr))
		}
	}
	return out
}

// Substitute replaces Grafana's interval variables with a fixed range.
func Substitute(expr string) string {
	r := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")
	return r.Replace(expr)
}

// metricPrefixes are the families whose names a check compares with what the binaries export.
// "up" and other series that Prometheus makes itself are not among them.
var metricName = regexp.MustCompile(`\b(chatpipe_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)

// MetricNames returns the metric names an expression uses, without the _bucket, _sum and _count
// of a histogram.
func MetricNames(expr string) []string {
	seen := map[string]bool{}
	for _, m := range metricName.FindAllString(expr, -1) {
		seen[m] = true
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Unknown returns the names used in exprs that are not in exported (family names, as
// /metrics lists them in "# TYPE" lines; histogram series suffixes are allowed).
func Unknown(exprs []string, exported map[string]bool) []string {
	var bad []string
	for _, e := range exprs {
		for _, n := range MetricNames(e) {
			if exported[n] {
				continue
			}
			base := n
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				base = strings.TrimSuffix(base, suf)
			}
			if base != n && exported[base] {
				continue
			}
			bad = append(bad, n)
		}
	}
	return bad
}

// Families reads the metric family names from a /metrics page (Prometheus text or OpenMetrics).
// OpenMetrics names a counter family without its _total suffix; both forms are returned.
func Families(page string) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = true
			if f[3] == "counter" && !strings.HasSuffix(f[2], "_total") {
				out[f[2]+"_total"] = true
			}
		}
	}
	return out
}
