package testenv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/config"
)

// Env returns a getenv over m, for the run functions of the commands.
func Env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// SyncBuffer is a log sink that a server's goroutines and the test may share.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// WaitFor polls cond until it holds, failing the test after d.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Build builds the packages' commands (go build, with build tags when not empty) into a
// temporary folder and returns it.
func Build(t testing.TB, tags string, pkgs ...string) string {
	t.Helper()
	dir := t.TempDir()
	args := []string{"build", "-o", dir + "/"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	if out, err := exec.Command("go", append(args, pkgs...)...).CombinedOutput(); err != nil {
		t.Fatalf("go build %v: %v\n%s", pkgs, err, out)
	}
	return dir
}

// Migrate applies the schema with a built flushworker binary.
func Migrate(t testing.TB, flushworker, dsn string) {
	t.Helper()
	cmd := exec.Command(flushworker, "migrate")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dsn)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("flushworker migrate: %v\n%s", err, out)
	}
}

// WaitReady waits until url answers 200, failing the test after d.
func WaitReady(t testing.TB, url string, d time.Duration) {
	t.Helper()
	WaitFor(t, url+" to answer 200", d, func() bool {
		res, err := http.Get(url)
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK
	})
}

// RunFunc is a command's run function: what its main calls once signals are wired.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error

// WantInvalidSetting runs a command with args and env and fails the test unless the command
// refuses them as an invalid setting — the one named, when setting is not empty — in one short
// line that holds no "topsecret". The run is bounded: a value that slips through validation
// fails here instead of hanging on a connection.
func WantInvalidSetting(t testing.TB, run RunFunc, args []string, env map[string]string, setting string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, Env(env), &out, &out)
	var cerr *config.Error
	if !errors.As(err, &cerr) || (setting != "" && cerr.Setting != setting) {
		t.Fatalf("%v %v: err = %v, want an invalid setting %s", args, env, err, setting)
	}
	if msg := err.Error(); strings.Contains(msg, "\n") || len(msg) > 300 || strings.Contains(msg, "topsecret") {
		t.Errorf("error is not one short line without secrets: %q", msg)
	}
}

// WantUnsafeValkeyRefused runs a command against a Valkey with an evicting maxmemory-policy and
// against a cluster-enabled server in standalone mode, and fails the test unless each is
// refused at start as an invalid setting (VALKEY_ALLOW_EVICTION, naming the policy; VALKEY_MODE)
// in one short line, which main turns into exit status 2.
func WantUnsafeValkeyRefused(t *testing.T, run RunFunc) {
	t.Helper()
	lru := StartValkey(t, "--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru")
	cluster := StartValkey(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
	env := func(addr string) map[string]string {
		return map[string]string{"VALKEY_ADDR": addr, "INGEST_ADDR": "127.0.0.1:0", "FLUSH_METRICS_ADDR": "127.0.0.1:0", "DATABASE_URL": "postgres://127.0.0.1:1/none"}
	}
	WantInvalidSetting(t, run, nil, env(lru.Addr), "VALKEY_ALLOW_EVICTION")
	WantInvalidSetting(t, run, nil, env(cluster.Addr), "VALKEY_MODE")
	var out bytes.Buffer
	err := run(context.Background(), nil, Env(env(lru.Addr)), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "allkeys-lru") || config.ExitCode(err) != 2 {
		t.Fatalf("err %v (exit %d), want the policy named and exit 2", err, config.ExitCode(err))
	}
}

// InvalidSetting is one bad input for WantInvalidSetting.
type InvalidSetting struct {
	Name    string
	Args    []string
	Env     map[string]string
	Setting string
}

// InvalidValkeySettings returns the bad Valkey and layout settings both binaries must refuse:
// malformed, hostile, oversized and empty values, and combinations that cannot work.
func InvalidValkeySettings() []InvalidSetting {
	return []InvalidSetting{
		{"valkey mode unknown", nil, map[string]string{"VALKEY_MODE": "ring"}, "VALKEY_MODE"},
		{"valkey mode cluster", nil, map[string]string{"VALKEY_MODE": "cluster"}, "VALKEY_MODE"},
		{"valkey addr list with a bad entry", nil, map[string]string{"VALKEY_MODE": "sentinel", "VALKEY_SENTINEL_MASTER": "m", "VALKEY_ADDR": "127.0.0.1:26379,,x"}, "VALKEY_ADDR"},
		{"valkey addr list hostile", nil, map[string]string{"VALKEY_ADDR": "127.0.0.1:1,$(reboot):2"}, "VALKEY_ADDR"},
		{"two addresses in standalone", nil, map[string]string{"VALKEY_ADDR": "127.0.0.1:1,127.0.0.1:2"}, "VALKEY_ADDR"},
		{"sentinel without master", nil, map[string]string{"VALKEY_MODE": "sentinel", "VALKEY_ADDR": "127.0.0.1:26379"}, "VALKEY_SENTINEL_MASTER"},
		{"sentinel master with space", []string{"--valkey-sentinel-master", "my master"}, nil, "--valkey-sentinel-master"},
		{"valkey url bad scheme", nil, map[string]string{"VALKEY_URL": "http://u:topsecret@h:1"}, "VALKEY_URL"},
		{"valkey url malformed", nil, map[string]string{"VALKEY_URL": "valkey://u:topsecret@[::1"}, "VALKEY_URL"},
		{"sentinel master too long", nil, map[string]string{"VALKEY_SENTINEL_MASTER": strings.Repeat("m", 200)}, "VALKEY_SENTINEL_MASTER"},
		{"too many valkey addresses", nil, map[string]string{"VALKEY_ADDR": strings.TrimSuffix(strings.Repeat("127.0.0.1:1,", 65), ",")}, "VALKEY_ADDR"},
		{"valkey url huge", nil, map[string]string{"VALKEY_URL": "valkey://" + strings.Repeat("h", 100000) + ":1"}, "VALKEY_URL"},
		{"cluster with the single layout", nil, map[string]string{"VALKEY_MODE": "cluster", "KEY_LAYOUT": "single"}, "VALKEY_MODE"},
		{"layout unknown", nil, map[string]string{"KEY_LAYOUT": "sharded"}, "KEY_LAYOUT"},
		{"layout empty flag", []string{"--key-layout="}, nil, "--key-layout"},
		{"partitions zero", nil, map[string]string{"KEY_LAYOUT": "partitioned", "KEY_PARTITIONS": "0"}, "KEY_PARTITIONS"},
		{"partitions too many", nil, map[string]string{"KEY_LAYOUT": "partitioned", "KEY_PARTITIONS": "65"}, "KEY_PARTITIONS"},
		{"partitioned prefix with a brace", nil, map[string]string{"KEY_LAYOUT": "partitioned", "KEY_PREFIX": "app{x}:"}, "KEY_PREFIX"},
		{"allow eviction not a bool", nil, map[string]string{"VALKEY_ALLOW_EVICTION": "sometimes"}, "VALKEY_ALLOW_EVICTION"},
	}
}

// Slow skips a slow suite under -short (and only then), saying what makes it slow.
func Slow(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skip(why + "; skipped with -short")
	}
}
