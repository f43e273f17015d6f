package opscheck_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/opscheck"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const root = "../.."

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found: install it with: make deps (or as root: apt-get install prometheus)")
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %v: %v\n%s", args, err, out)
	}
}

func TestPromtool(t *testing.T) {
	t.Parallel()
	promtool(t, "check", "config", filepath.Join(root, "prometheus/prometheus.yml"))
	promtool(t, "check", "rules", filepath.Join(root, "prometheus/alerts.yml"))
	promtool(t, "test", "rules", filepath.Join(root, "prometheus/alerts_test.yml"))
}

// TestEveryAlertTested: promtool passes a rule without tests, so check that each alert has one.
func TestEveryAlertTested(t *testing.T) {
	t.Parallel()
	alerts := alertNames(t)
	tests, err := os.ReadFile(filepath.Join(root, "prometheus/alerts_test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range alerts {
		if !strings.Contains(string(tests), "alertname: "+a+"\n") {
			t.Errorf("alert %s has no promtool unit test", a)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func readRules(t *testing.T) ruleFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, "prometheus/alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(raw, &rf); err != nil {
		t.Fatal(err)
	}
	return rf
}

func alertNames(t *testing.T) []string {
	var out []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			out = append(out, r.Alert)
		}
	}
	return out
}

func ruleExprs(t *testing.T) []string {
	var out []string
	for _, g := range readRules(t).Groups {
		for _, r := range g.Rules {
			out = append(out, r.Expr)
		}
	}
	return out
}

func dashboards(t *testing.T) map[string]*opscheck.Dashboard {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "grafana/dashboards/*.json"))
	if len(files) < 2 {
		t.Fatalf("found %d dashboards, want the overview and the worker detail", len(files))
	}
	out := map[string]*opscheck.Dashboard{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		d, err := opscheck.ParseDashboard(raw, "prometheus")
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = d
	}
	return out
}

func TestDashboardsParse(t *testing.T) {
	t.Parallel()
	ds := dashboards(t)
	raw, _ := os.ReadFile(filepath.Join(root, "grafana/provisioning/datasources/prometheus.yml"))
	if !strings.Contains(string(raw), "uid: prometheus") {
		t.Fatal("the provisioned data source does not have the uid the dashboards use")
	}
	// Strictness: a misspelled key is an error.
	bad := bytes.Replace(mustRead(t, "grafana/dashboards/overview.json"), []byte(`"panels"`), []byte(`"panelz"`), 1)
	if _, err := opscheck.ParseDashboard(bad, "prometheus"); err == nil {
		t.Error("a misspelled key parsed")
	}
	if len(ds) == 0 {
		t.Fatal("no dashboards")
	}
}

func mustRead(t *testing.T, rel string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDashboardPromQLParses hands every dashboard query to promtool as a recording rule:
// promtool parses each expression with Prometheus' own parser.
func TestDashboardPromQLParses(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboards\n    rules:\n")
	n := 0
	for name, d := range dashboards(t) {
		for _, e := range d.Exprs() {
			fmt.Fprintf(&b, "      - record: dashboard:%s:%d\n        expr: %q\n", strings.TrimSuffix(name, ".json"), n, e)
			n++
		}
	}
	f := filepath.Join(t.TempDir(), "dashboards.rules.yml")
	if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promtool(t, "check", "rules", f)
	// And a broken expression is caught the same way.
	broken := filepath.Join(t.TempDir(), "broken.yml")
	_ = os.WriteFile(broken, []byte("groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: \"sum(rate(chatpipe_ingest_requests_total[5m])\"\n"), 0o644)
	if err := exec.Command("promtool", "check", "rules", broken).Run(); err == nil {
		t.Error("promtool accepted an unbalanced expression")
	}
}

// TestMetricNamesExist runs the real binaries, reads their /metrics, and checks every metric
// name in the dashboards and alert rules against it.
func TestMetricNamesExist(t *testing.T) {
	testenv.Slow(t, "builds and runs the binaries")
	t.Parallel()
	exported := scrapeBinaries(t)
	var exprs []string
	for _, d := range dashboards(t) {
		exprs = append(exprs, d.Exprs()...)
	}
	exprs = append(exprs, ruleExprs(t)...)
	if bad := opscheck.Unknown(exprs, exported); len(bad) > 0 {
		t.Fatalf("dashboards or alerts use metrics the binaries do not export: %v", bad)
	}
	// The check catches a misspelled metric in a dashboard.
	raw := bytes.Replace(mustRead(t, "grafana/dashboards/overview.json"), []byte("chatpipe_flush_rows_persisted_total"), []byte("chatpipe_flush_rows_persistd_total"), 1)
	d, err := opscheck.ParseDashboard(raw, "prometheus")
	if err != nil {
		t.Fatal(err)
	}
	if bad := opscheck.Unknown(d.Exprs(), exported); !slices.Equal(bad, []string{"chatpipe_flush_rows_persistd_total"}) {
		t.Fatalf("misspelled metric: Unknown = %v, want it reported", bad)
	}
}

func scrapeBinaries(t *testing.T) map[string]bool {
	t.Helper()
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	v := testenv.StartValkey(t)
	dsn := testenv.Postgres(t)
	ingestAddr, workerAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	start := func(name string, env ...string) {
		startBinary(t, filepath.Join(dir, name), append([]string{"VALKEY_ADDR=" + v.Addr, "DATABASE_URL=" + dsn}, env...)...)
	}
	start("ingest", "INGEST_ADDR="+ingestAddr)
	start("flushworker", "FLUSH_METRICS_ADDR="+workerAddr, "FLUSH_INTERVAL=50ms")
	get := func(url string) (int, string) {
		res, err := http.Get(url)
		if err != nil {
			return 0, ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	testenv.WaitReady(t, "http://"+ingestAddr+"/readyz", 20*time.Second)
	testenv.WaitReady(t, "http://"+workerAddr+"/readyz", 20*time.Second)
	for _, path := range []string{"/v1/messages", "/v1/private-messages"} {
		body := `{"owner_id":"a","recipient_id":"b","content":"hello"}`
		if path == "/v1/messages" {
			body = `{"owner_id":"a","content":"hello"}`
		}
		res, err := http.Post("http://"+ingestAddr+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	testenv.WaitFor(t, "a written batch and the queue gauges", 20*time.Second, func() bool {
		_, page := get("http://" + workerAddr + "/metrics")
		return strings.Contains(page, `chatpipe_flush_end_to_end_seconds_bucket{stream="private_message"`) &&
			strings.Contains(page, "chatpipe_queue_stream_length{")
	})
	exported := map[string]bool{}
	for _, addr := range []string{ingestAddr, workerAddr} {
		_, page := get("http://" + addr + "/metrics")
		for n := range opscheck.Families(page) {
			exported[n] = true
		}
	}
	return exported
}

// TestCompose loads compose.yaml with the compose-spec loader, consistency checks on, and
// checks the deployment rules.
func TestCompose(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithConsistency(true), cli.WithResolvedPaths(true), cli.WithEnv([]string{"INGEST_AUTH_TOKEN=t0ken"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		return s
	}
	for _, name := range []string{"valkey", "postgres", "migrate", "ingest", "flushworker", "prometheus", "grafana"} {
		svc(name)
	}
	if v := svc("valkey"); v.Image != "valkey/valkey:8.1" || !slices.Contains(v.Command, "--appendonly") || v.HealthCheck == nil {
		t.Errorf("valkey: image %q, command %v, healthcheck %v; want valkey/valkey:8.1 with AOF and a healthcheck", v.Image, v.Command, v.HealthCheck)
	}
	if pg := svc("postgres"); pg.HealthCheck == nil || len(pg.Volumes) == 0 {
		t.Error("postgres needs a healthcheck and a volume")
	}
	if m := svc("migrate"); !slices.Contains(append(m.Entrypoint, m.Command...), "migrate") || m.Restart != "no" {
		t.Errorf("migrate must be a one-shot 'flushworker migrate' (restart %q)", m.Restart)
	}
	w := svc("flushworker")
	if w.Deploy == nil || w.Deploy.Replicas == nil || *w.Deploy.Replicas != 3 {
		t.Error("flushworker needs deploy.replicas: 3")
	}
	if w.StopGracePeriod == nil {
		t.Error("flushworker needs an explicit stop_grace_period")
	}
	if dep, ok := w.DependsOn["migrate"]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Error("flushworker must wait for migrate to complete")
	}
	for _, problem := range replicaProblems(p) {
		t.Error(problem)
	}
	for _, problem := range openIngests(p) {
		t.Error(problem)
	}
	g := svc("grafana")
	var mounts []string
	for _, v := range g.Volumes {
		mounts = append(mounts, v.Target)
	}
	if !slices.Contains(mounts, "/etc/grafana/provisioning") || !slices.Contains(mounts, "/var/lib/grafana/dashboards") {
		t.Errorf("grafana mounts %v; want the provisioning and dashboards folders", mounts)
	}
	raw := mustRead(t, "grafana/provisioning/dashboards/chatpipe.yml")
	if !strings.Contains(string(raw), "/var/lib/grafana/dashboards") {
		t.Error("the dashboards provider does not read the mounted folder")
	}
}

// TestComposeHA loads compose.yaml with the ha profile: a primary, a replica, three Sentinels,
// and ingest and workers in sentinel mode, ingest with durable acceptance.
func TestComposeHA(t *testing.T) {
	t.Parallel()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "compose.yaml")},
		cli.WithWorkingDirectory(root), cli.WithConsistency(true), cli.WithResolvedPaths(true), cli.WithProfiles([]string{"ha"}), cli.WithEnv([]string{"INGEST_AUTH_TOKEN=t0ken"}))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml, profile ha: %v", err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatalf("profile ha: service %s: %v", name, err)
		}
		return s
	}
	if r := svc("valkey-replica"); !slices.Contains(r.Command, "--replicaof") {
		t.Errorf("valkey-replica command %v: want --replicaof", r.Command)
	}
	for _, name := range []string{"valkey-primary", "valkey-replica"} {
		if c := svc(name).Command; !slices.Contains(c, "noeviction") || !slices.Contains(c, "--appendonly") {
			t.Errorf("%s command %v: want noeviction and the AOF", name, c)
		}
	}
	if s := svc("sentinel"); s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas != 3 || !strings.Contains(strings.Join(s.Command, " "), "sentinel monitor chatpipe") {
		t.Error("sentinel needs three replicas monitoring the set chatpipe")
	}
	for _, name := range []string{"ingest-ha", "flushworker-ha"} {
		env := svc(name).Environment
		if m := env["VALKEY_MODE"]; m == nil || *m != "sentinel" {
			t.Errorf("%s: VALKEY_MODE %v, want sentinel", name, m)
		}
		if m := env["VALKEY_SENTINEL_MASTER"]; m == nil || *m != "chatpipe" {
			t.Errorf("%s: VALKEY_SENTINEL_MASTER %v, want chatpipe", name, m)
		}
	}
	if d := svc("ingest-ha").Environment["INGEST_DURABILITY"]; d == nil || *d != "replica" {
		t.Errorf("ingest-ha: INGEST_DURABILITY %v, want replica", d)
	}
	if w := svc("flushworker-ha").Environment["FLUSH_WAIT_REPLICAS"]; w == nil || *w != "1" {
		t.Errorf("flushworker-ha: FLUSH_WAIT_REPLICAS %v, want 1 (write only what the replica holds)", w)
	}
	for _, problem := range replicaProblems(p) {
		t.Error(problem)
	}
	for _, problem := range openIngests(p) {
		t.Error(problem)
	}
}

// TestComposeWantsToken: compose refuses to start without INGEST_AUTH_TOKEN, saying how to set it.
func TestComposeWantsToken(t *testing.T) {
	t.Parallel()
	for _, profiles := range [][]string{nil, {"ha"}} {
		opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "compose.yaml")},
			cli.WithWorkingDirectory(root), cli.WithProfiles(profiles), cli.WithEnv([]string{"INGEST_AUTH_TOKEN="}))
		if err != nil {
			t.Fatal(err)
		}
		_, err = opts.LoadProject(context.Background())
		if err == nil || !strings.Contains(err.Error(), "INGEST_AUTH_TOKEN") || !strings.Contains(err.Error(), "openssl rand") {
			t.Errorf("profiles %v, no INGEST_AUTH_TOKEN: %v; want a refusal that says how to set it", profiles, err)
		}
	}
}

// openIngests: an ingest listening beyond loopback must have a token, as the binary insists
// (a compose file that starts one without would restart it forever).
func openIngests(p *types.Project) []string {
	var out []string
	for _, s := range p.Services {
		if !slices.Contains(s.Entrypoint, "/usr/local/bin/ingest") {
			continue
		}
		addr := s.Environment["INGEST_ADDR"]
		if addr != nil && config.Loopback(*addr) {
			continue
		}
		token := false
		for _, k := range []string{"INGEST_AUTH_TOKEN", "INGEST_AUTH_TOKENS", "INGEST_AUTH_TOKEN_FILE", "INGEST_AUTH_TOKENS_FILE"} {
			if v := s.Environment[k]; v != nil && *v != "" {
				token = true
			}
		}
		if !token {
			out = append(out, s.Name+" listens beyond loopback with no INGEST_AUTH_TOKEN")
		}
	}
	return out
}

// replicaProblems: a replicated service can have neither a fixed container name nor a fixed
// host port, or its replicas would collide.
func replicaProblems(p *types.Project) []string {
	var out []string
	for _, s := range p.Services {
		if s.Deploy == nil || s.Deploy.Replicas == nil || *s.Deploy.Replicas <= 1 {
			continue
		}
		if s.ContainerName != "" {
			out = append(out, fmt.Sprintf("%s is replicated but has container_name %q", s.Name, s.ContainerName))
		}
		for _, port := range s.Ports {
			if port.Published != "" {
				out = append(out, fmt.Sprintf("%s is replicated but publishes host port %s", s.Name, port.Published))
			}
		}
	}
	return out
}

// TestComposeReplicaRulesBite: a replicated service with a fixed container name is refused by
// the loader's consistency checks, one with a fixed host port by replicaProblems.
func TestComposeReplicaRulesBite(t *testing.T) {
	t.Parallel()
	load := func(broken string) (*types.Project, error) {
		dir := t.TempDir()
		_ = os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(broken), 0o644)
		opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")}, cli.WithWorkingDirectory(dir), cli.WithConsistency(true), cli.WithEnv([]string{"INGEST_AUTH_TOKEN=t0ken"}))
		if err != nil {
			return nil, err
		}
		return opts.LoadProject(context.Background())
	}
	good := string(mustRead(t, "compose.yaml"))
	expose := "    expose:\n      - \"9091\""
	if !strings.Contains(good, expose) {
		t.Fatal("compose.yaml changed: update this test's edit")
	}
	if _, err := load(strings.Replace(good, expose, "    container_name: worker\n"+expose, 1)); err == nil {
		t.Error("a replicated service with container_name loaded")
	}
	p, err := load(strings.Replace(good, expose, "    ports:\n      - \"9091:9091\"", 1))
	if err != nil {
		t.Fatalf("loading: %v", err)
	}
	if got := replicaProblems(p); len(got) != 1 || !strings.Contains(got[0], "host port") {
		t.Fatalf("replica rules found %v, want the fixed host port", got)
	}
}

// startBinary starts a built binary with env added to this process's, kills it when the test
// ends, and logs its output then if the test failed.
func startBinary(t *testing.T, bin string, env ...string) {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s's log:\n%s", filepath.Base(bin), logs.String())
		}
	})
}
