package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func TestInvalidSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{"batch zero", nil, map[string]string{"FLUSH_BATCH_SIZE": "0"}, "FLUSH_BATCH_SIZE"},
		{"batch not a number", []string{"--flush-batch-size", "many"}, nil, "--flush-batch-size"},
		{"interval empty flag", []string{"--flush-interval="}, nil, "--flush-interval"},
		{"interval hostile", nil, map[string]string{"FLUSH_INTERVAL": "1s; rm -rf /"}, "FLUSH_INTERVAL"},
		{"min idle too small", nil, map[string]string{"FLUSH_MIN_IDLE": "1ms"}, "FLUSH_MIN_IDLE"},
		{"consumer with space", nil, map[string]string{"FLUSH_CONSUMER": "a b"}, "FLUSH_CONSUMER"},
		{"consumer too long", nil, map[string]string{"FLUSH_CONSUMER": strings.Repeat("c", 200)}, "FLUSH_CONSUMER"},
		{"bad dsn", nil, map[string]string{"DATABASE_URL": "postgres://u:topsecret@h:port/db"}, "DATABASE_URL"},
		{"bad metrics addr", nil, map[string]string{"FLUSH_METRICS_ADDR": "nowhere"}, "FLUSH_METRICS_ADDR"},
		{"pprof port out of range", nil, map[string]string{"PPROF_ADDR": "127.0.0.1:70000"}, "PPROF_ADDR"},
		{"max deliveries", nil, map[string]string{"FLUSH_MAX_DELIVERIES": "-3"}, "FLUSH_MAX_DELIVERIES"},
		{"default channel hostile", nil, map[string]string{"DEFAULT_CHANNEL": "x'; DROP TABLE chat_messages; --"}, "DEFAULT_CHANNEL"},
		{"ring TTL huge", nil, map[string]string{"RING_IDLE_TTL": "100000h"}, "RING_IDLE_TTL"},
		{"unknown flag", []string{"--batch=5"}, nil, "command line"},
		{"migrate: bad dsn", []string{"migrate"}, map[string]string{"DATABASE_URL": "::::"}, "DATABASE_URL"},
		{"dlq: bad stream", []string{"dlq", "list", "--stream", "other"}, nil, "--stream"},
		{"dlq: bad ids", []string{"dlq", "purge", "--stream", "message", "--ids", "1-0,*"}, nil, "--ids"},
		{"dlq: ids and all", []string{"dlq", "purge", "--stream", "message", "--ids", "1-0", "--all"}, nil, "command line"},
		{"dlq: neither", []string{"dlq", "replay"}, nil, "command line"},
		{"dlq: ids on all streams", []string{"dlq", "replay", "--ids", "1-0"}, nil, "command line"},
		{"dlq: count negative", []string{"dlq", "list", "--count", "-1"}, nil, "--count"},
		{"console: bad addr", []string{"console"}, map[string]string{"CONSOLE_ADDR": "nowhere"}, "CONSOLE_ADDR"},
		{"console: empty addr", []string{"console", "--console-addr="}, nil, "--console-addr"},
		{"console: open to the network without auth", []string{"console"}, map[string]string{"CONSOLE_ADDR": "0.0.0.0:9092"}, "CONSOLE_ADDR"},
		{"console: user without password", []string{"console"}, map[string]string{"CONSOLE_USER": "ops"}, "CONSOLE_USER"},
		{"console: read-only not a bool", []string{"console"}, map[string]string{"CONSOLE_READ_ONLY": "maybe"}, "CONSOLE_READ_ONLY"},
		{"console: grafana not a URL", []string{"console"}, map[string]string{"GRAFANA_URL": "javascript:alert(1)"}, "GRAFANA_URL"},
		{"console: min idle", []string{"console"}, map[string]string{"FLUSH_MIN_IDLE": "0"}, "FLUSH_MIN_IDLE"},
		{"console: unknown flag", []string{"console", "--open"}, nil, "command line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testenv.WantInvalidSetting(t, run, tt.args, tt.env, tt.setting) })
	}
	for _, tt := range testenv.InvalidValkeySettings() {
		t.Run(tt.Name, func(t *testing.T) { testenv.WantInvalidSetting(t, run, tt.Args, tt.Env, tt.Setting) })
	}
	var out bytes.Buffer
	for _, args := range [][]string{{"dlq", "frobnicate"}, {"frobnicate"}, {"dlq"}, {""}} {
		if err := run(context.Background(), args, testenv.Env(nil), &out, &out); config.ExitCode(err) != 2 {
			t.Errorf("%q: err = %v, want a usage error (exit 2)", args, err)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"migrate", "--help"}, {"dlq", "--help"}, {"dlq", "list", "--help"}, {"dlq", "replay", "-h"}, {"dlq", "purge", "--help"}, {"console", "--help"}} {
		var out bytes.Buffer
		if err := run(context.Background(), args, testenv.Env(nil), &out, &out); !errors.Is(err, config.ErrHelp) {
			t.Errorf("%v: err = %v, want ErrHelp", args, err)
		}
		if !strings.Contains(out.String(), "Usage:") {
			t.Errorf("%v printed no usage: %q", args, out.String())
		}
	}
	var out bytes.Buffer
	_ = run(context.Background(), []string{"run", "--help"}, testenv.Env(nil), &out, &out)
	for _, s := range []string{"FLUSH_BATCH_SIZE", "500", "FLUSH_INTERVAL", "1s", "FLUSH_MIN_IDLE", "30s", "FLUSH_MAX_DELIVERIES", "FLUSH_CONSUMER", "FLUSH_GRACE", "10s", "FLUSH_METRICS_ADDR", ":9091", "DATABASE_URL"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("run --help lacks %q", s)
		}
	}
}

type bundle struct {
	valkey *testenv.Valkey
	dsn    string
	env    map[string]string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	v := testenv.StartValkey(t)
	dsn := testenv.Postgres(t)
	return &bundle{valkey: v, dsn: dsn, env: map[string]string{
		"VALKEY_ADDR": v.Addr, "DATABASE_URL": dsn, "FLUSH_METRICS_ADDR": "127.0.0.1:0",
		"FLUSH_INTERVAL": "50ms", "FLUSH_CONSUMER": "w1", "LOG_LEVEL": "debug",
	}}
}

func (b *bundle) enqueue(t *testing.T, n int) {
	t.Helper()
	scripts, err := store.Open(b.valkey.Client(t), store.Config{DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		m := message.Message{OwnerID: "u", Content: fmt.Sprint(i), CreatedAt: "2026-11-25T10:00:00Z"}
		if _, err := scripts.Enqueue(context.Background(), store.Message{OwnerID: "u", Data: m.JSON()}); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *bundle) rows(t *testing.T) int64 {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var n int64
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM chat_messages").Scan(&n); err != nil {
		return -1
	}
	return n
}

// TestRunAndDLQ runs the worker in-process, then the dlq commands on what it dead-lettered.
func TestRunAndDLQ(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.enqueue(t, 20)
	c := b.valkey.Client(t)
	testenv.Do(t, c, "XADD", "chatpipe:flush:message", "*", "cache_id", "999", "kind", "message", "payload", "{broken")
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, testenv.Env(b.env), logs, logs) }()
	testenv.WaitFor(t, "rows", 20*time.Second, func() bool { return b.rows(t) == 20 })
	testenv.WaitFor(t, "dead letter", 10*time.Second, func() bool {
		n, _ := testenv.Do(t, c, "XLEN", "chatpipe:dead:message").AsInt64()
		return n == 1
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not stop")
	}
	if !strings.Contains(logs.String(), "left the consumer group") {
		t.Errorf("no clean leave in the logs:\n%s", logs.String())
	}

	dlq := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if err := run(context.Background(), append([]string{"dlq"}, args...), testenv.Env(b.env), &out, &errOut); err != nil {
			t.Fatalf("dlq %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	list := dlq("list", "--stream", "message")
	if !strings.Contains(list, "cache_id=999") || !strings.Contains(list, "not a ring entry") || !strings.Contains(list, "1 dead letters") {
		t.Fatalf("dlq list:\n%s", list)
	}
	if js := dlq("list", "--json"); !strings.Contains(js, `"original_id"`) {
		t.Fatalf("dlq list --json:\n%s", js)
	}
	if out := dlq("replay", "--all"); !strings.Contains(out, "message: replayed 1 dead letters") {
		t.Fatalf("dlq replay:\n%s", out)
	}
	n, _ := testenv.Do(t, c, "XLEN", "chatpipe:dead:message").AsInt64()
	if n != 0 {
		t.Fatalf("%d dead letters after replay, want 0", n)
	}
	id, _ := testenv.Do(t, c, "XADD", "chatpipe:dead:message", "*", "cache_id", "1", "kind", "message", "payload", "x").ToString()
	if out := dlq("purge", "--stream", "message", "--ids", id+",6-0"); !strings.Contains(out, "purged 1 dead letters (1 ids not found)") {
		t.Fatalf("dlq purge:\n%s", out)
	}
}

// TestBinary runs the built worker: migrate, then run with an hour's flush interval, which a
// batch does not wait for (group commit: written once nothing more waits); SIGTERM exits 0
// within the grace period.
func TestBinary(t *testing.T) {
	testenv.Slow(t, "builds the binary")
	t.Parallel()
	b := setup(t)
	bin := filepath.Join(testenv.Build(t, "", "."), "flushworker")
	var environ []string
	for k, v := range b.env {
		environ = append(environ, k+"="+v)
	}
	mig := exec.Command(bin, "migrate")
	mig.Env = append(os.Environ(), environ...)
	out, err := mig.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "schema at version") {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(bin, "--flush-interval=1h", "--flush-metrics-addr="+addr)
	cmd.Env = append(os.Environ(), environ...)
	logs := &testenv.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitReady(t, "http://"+addr+"/readyz", 20*time.Second)
	b.enqueue(t, 10)
	testenv.WaitFor(t, "the rows, long before the interval", 10*time.Second, func() bool { return b.rows(t) == 10 })
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit within 15s of SIGTERM\n%s", logs.String())
	}
	if n := b.rows(t); n != 10 {
		t.Fatalf("%d rows after SIGTERM, want 10", n)
	}
	t.Logf("stopped in %s", time.Since(start))

}

// TestSecretsStayOut: with a password-protected Valkey and a DSN holding a password, no log line,
// error or /metrics page of a full run (including failures) holds either password.
func TestSecretsStayOut(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t, "--requirepass", "vk-pass-123")
	dsn := strings.Replace(testenv.Postgres(t), "postgres@", "postgres:pg-pass-456@", 1)
	metricsAddr := testenv.FreeAddr(t)
	envs := map[string]string{"VALKEY_ADDR": v.Addr, "VALKEY_PASSWORD": "vk-pass-123", "DATABASE_URL": dsn,
		"FLUSH_METRICS_ADDR": metricsAddr, "FLUSH_INTERVAL": "50ms", "LOG_LEVEL": "debug"}
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, testenv.Env(envs), logs, logs) }()
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{v.Addr}, Password: "vk-pass-123", DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testenv.Do(t, c, "XADD", "chatpipe:flush:message", "*", "cache_id", "5", "kind", "message", "payload", "{bad")
	testenv.WaitFor(t, "the dead letter", 20*time.Second, func() bool {
		n, _ := testenv.Do(t, c, "XLEN", "chatpipe:dead:message").AsInt64()
		return n == 1
	})
	res, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	_, _ = page.ReadFrom(res.Body)
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Failures: a wrong Valkey password, an unreachable Postgres.
	var errs []string
	bad := map[string]string{"VALKEY_ADDR": v.Addr, "VALKEY_PASSWORD": "vk-pass-123-wrong", "DATABASE_URL": dsn}
	if err := run(context.Background(), []string{"dlq", "list"}, testenv.Env(bad), logs, logs); err != nil {
		errs = append(errs, err.Error())
	}
	mctx, mcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer mcancel()
	down := map[string]string{"DATABASE_URL": "postgres://u:pg-pass-456@127.0.0.1:1/db?connect_timeout=1"}
	if err := run(mctx, []string{"migrate"}, testenv.Env(down), logs, logs); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) != 2 {
		t.Fatalf("want two failures, got %q", errs)
	}
	all := logs.String() + page.String() + strings.Join(errs, "\n")
	for _, secret := range []string{"vk-pass-123", "pg-pass-456"} {
		if strings.Contains(all, secret) {
			t.Errorf("%s appears in the logs, /metrics or an error:\n%s", secret, all)
		}
	}
}

// TestRefusesUnsafeValkey: an evicting maxmemory-policy and a cluster-enabled server in
// standalone mode are refused at start with one line naming the setting (exit status 2).
func TestRefusesUnsafeValkey(t *testing.T) {
	t.Parallel()
	testenv.WantUnsafeValkeyRefused(t, run)
}

// TestSecretFiles: the worker, migrate and the console take their secrets from files (Docker
// and Kubernetes secrets): a password-protected Valkey, the DSN, the console's password. Both
// forms of one setting, or an unreadable file, are refused naming the setting.
func TestSecretFiles(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t, "--requirepass", "vk-file-pass")
	dsn := testenv.Postgres(t)
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := map[string]string{"VALKEY_ADDR": v.Addr, "VALKEY_PASSWORD_FILE": file("valkey", "vk-file-pass"),
		"DATABASE_URL_FILE": file("dsn", dsn), "FLUSH_METRICS_ADDR": "127.0.0.1:0", "FLUSH_INTERVAL": "50ms"}
	logs := &testenv.SyncBuffer{}
	if err := run(context.Background(), []string{"migrate"}, testenv.Env(env), logs, logs); err != nil {
		t.Fatalf("migrate with DATABASE_URL_FILE: %v\n%s", err, logs.String())
	}
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{v.Addr}, Password: "vk-file-pass", DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := &bundle{valkey: v, dsn: dsn}
	scripts, err := store.Open(c, store.Config{DefaultRate: store.RateLimit{Limit: store.MaxLimit, WindowSeconds: 1, Algorithm: store.Fixed}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := message.Message{OwnerID: "u", Content: fmt.Sprint(i), CreatedAt: "2026-12-03T10:00:00Z"}
		if _, err := scripts.Enqueue(context.Background(), store.Message{OwnerID: "u", Data: m.JSON()}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, testenv.Env(env), logs, logs) }()
	testenv.WaitFor(t, "the 5 rows", 20*time.Second, func() bool { return b.rows(t) == 5 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}

	addr := testenv.FreeAddr(t)
	cenv := map[string]string{"VALKEY_ADDR": v.Addr, "VALKEY_PASSWORD_FILE": env["VALKEY_PASSWORD_FILE"], "CONSOLE_ADDR": addr,
		"CONSOLE_USER": "ops", "CONSOLE_PASSWORD_FILE": file("console", "console-file-pass")}
	cctx, ccancel := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() { cdone <- run(cctx, []string{"console"}, testenv.Env(cenv), logs, logs) }()
	testenv.WaitReady(t, "http://"+addr+"/healthz", 10*time.Second)
	for _, tc := range []struct {
		password string
		want     int
	}{{"console-file-pass", http.StatusOK}, {"console-file-pass\n", http.StatusUnauthorized}, {"wrong", http.StatusUnauthorized}} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
		req.SetBasicAuth("ops", tc.password)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("console with password %q: %d, want %d", tc.password, res.StatusCode, tc.want)
		}
	}
	ccancel()
	if err := <-cdone; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "file-pass") {
		t.Errorf("a password from a file is in the logs:\n%s", logs.String())
	}

	for _, tt := range []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{"run: DSN both ways", nil, map[string]string{"DATABASE_URL": dsn, "DATABASE_URL_FILE": env["DATABASE_URL_FILE"]}, "DATABASE_URL_FILE"},
		{"migrate: DSN both ways", []string{"migrate"}, map[string]string{"DATABASE_URL": dsn, "DATABASE_URL_FILE": env["DATABASE_URL_FILE"]}, "DATABASE_URL_FILE"},
		{"run: DSN file missing", nil, map[string]string{"DATABASE_URL_FILE": filepath.Join(dir, "none")}, "DATABASE_URL_FILE"},
		{"run: DSN file not a DSN", nil, map[string]string{"DATABASE_URL_FILE": file("topsecret", "topsecret garbage ' =")}, "DATABASE_URL_FILE"},
		{"dlq: valkey password both ways", []string{"dlq", "list"}, map[string]string{"VALKEY_PASSWORD": "x", "VALKEY_PASSWORD_FILE": env["VALKEY_PASSWORD_FILE"]}, "VALKEY_PASSWORD_FILE"},
		{"console: password both ways", []string{"console"}, map[string]string{"CONSOLE_USER": "ops", "CONSOLE_PASSWORD": "x", "CONSOLE_PASSWORD_FILE": cenv["CONSOLE_PASSWORD_FILE"]}, "CONSOLE_PASSWORD_FILE"},
		{"console: password file a folder", []string{"console", "--console-password-file", dir}, map[string]string{"CONSOLE_USER": "ops"}, "--console-password-file"},
	} {
		t.Run(tt.name, func(t *testing.T) { testenv.WantInvalidSetting(t, run, tt.args, tt.env, tt.setting) })
	}
}

// TestWarnsOfPartialReplicaWait: a worker that waits for one replica of a primary that has two
// says at start that a failover can then store a retried send twice, and one that waits for
// both does not.
func TestWarnsOfPartialReplicaWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	testenv.StartReplica(t, b.valkey)
	testenv.StartReplica(t, b.valkey)
	for _, tc := range []struct {
		wait string
		warn bool
	}{{"1", true}, {"2", false}} {
		env := maps.Clone(b.env)
		env["FLUSH_WAIT_REPLICAS"], env["FLUSH_CONSUMER"] = tc.wait, "w"+tc.wait
		ctx, cancel := context.WithCancel(context.Background())
		logs := &testenv.SyncBuffer{}
		done := make(chan error, 1)
		go func() { done <- run(ctx, nil, testenv.Env(env), logs, logs) }()
		testenv.WaitFor(t, "the worker consuming", 20*time.Second, func() bool { return strings.Contains(logs.String(), "msg=consuming") })
		cancel()
		<-done // stopped while it may still be creating its groups: its error says so, not this test's
		if got := strings.Contains(logs.String(), "FLUSH_WAIT_REPLICAS is below the primary's replicas"); got != tc.warn {
			t.Errorf("FLUSH_WAIT_REPLICAS=%s with 2 replicas: warned %v, want %v\n%s", tc.wait, got, tc.warn, logs.String())
		}
	}
}
