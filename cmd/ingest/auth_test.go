package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// writeSecret writes content to a new file of dir as an operator rotating a secret would: a
// temporary file renamed over the old one, so that a reader never sees half of it.
func writeSecret(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestAuthSettingsRefused: an API beyond loopback with no token, and malformed, hostile, empty
// and doubled token and secret settings, are refused at start with one line naming the setting.
func TestAuthSettingsRefused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	writeSecret(t, tokens, "read:topsecret1\n")
	blank := filepath.Join(dir, "blank")
	writeSecret(t, blank, ",\n")
	dsn := filepath.Join(dir, "dsn")
	writeSecret(t, dsn, "postgres://u:topsecret@127.0.0.1:1/db\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		setting string
	}{
		{"every interface, no token", nil, map[string]string{"INGEST_ADDR": ":18080"}, "INGEST_AUTH_TOKEN"},
		{"0.0.0.0, no token", nil, map[string]string{"INGEST_ADDR": "0.0.0.0:18080"}, "INGEST_AUTH_TOKEN"},
		{"IPv6 any, no token", []string{"--ingest-addr", "[::]:18080"}, nil, "INGEST_AUTH_TOKEN"},
		{"a host name, no token", nil, map[string]string{"INGEST_ADDR": "ingest.internal:18080"}, "INGEST_AUTH_TOKEN"},
		{"no auth not a bool", nil, map[string]string{"INGEST_ALLOW_NO_AUTH": "yes please"}, "INGEST_ALLOW_NO_AUTH"},
		{"token with a space", nil, map[string]string{"INGEST_AUTH_TOKEN": "topsecret x"}, "INGEST_AUTH_TOKEN"},
		{"token with a newline", []string{"--ingest-auth-token", "topsecret\nx"}, nil, "--ingest-auth-token"},
		{"token too long", nil, map[string]string{"INGEST_AUTH_TOKEN": strings.Repeat("topsecret", 200)}, "INGEST_AUTH_TOKEN"},
		{"tokens: a scope without a token", nil, map[string]string{"INGEST_AUTH_TOKENS": "read:topsecret,write:"}, "INGEST_AUTH_TOKENS"},
		{"tokens: only commas", nil, map[string]string{"INGEST_AUTH_TOKENS": ",,"}, "INGEST_AUTH_TOKENS"},
		{"tokens: non-ASCII", nil, map[string]string{"INGEST_AUTH_TOKENS": "topsecret-é"}, "INGEST_AUTH_TOKENS"},
		{"tokens: too many", nil, map[string]string{"INGEST_AUTH_TOKENS": strings.Repeat("t,", 300)}, "INGEST_AUTH_TOKENS"},
		{"tokens file and value", nil, map[string]string{"INGEST_AUTH_TOKENS": "both1", "INGEST_AUTH_TOKENS_FILE": tokens}, "INGEST_AUTH_TOKENS_FILE"},
		{"tokens file missing", nil, map[string]string{"INGEST_AUTH_TOKENS_FILE": filepath.Join(dir, "none")}, "INGEST_AUTH_TOKENS_FILE"},
		{"tokens file with no token", nil, map[string]string{"INGEST_AUTH_TOKENS_FILE": blank}, "INGEST_AUTH_TOKENS_FILE"},
		{"tokens file a folder", []string{"--ingest-auth-tokens-file", dir}, nil, "--ingest-auth-tokens-file"},
		{"database url and its file", nil, map[string]string{"DATABASE_URL": "postgres://127.0.0.1:1/db", "DATABASE_URL_FILE": dsn}, "DATABASE_URL_FILE"},
		{"valkey password and its file", nil, map[string]string{"VALKEY_PASSWORD": "topsecret", "VALKEY_PASSWORD_FILE": dsn}, "VALKEY_PASSWORD_FILE"},
		{"sentinel password file missing", nil, map[string]string{"VALKEY_SENTINEL_PASSWORD_FILE": "/nonexistent/x"}, "VALKEY_SENTINEL_PASSWORD_FILE"},
		{"database url file not a url", nil, map[string]string{"DATABASE_URL_FILE": tokens}, "DATABASE_URL_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testenv.WantInvalidSetting(t, run, tt.args, tt.env, tt.setting) })
	}
	// The refusal says what to do.
	err := run(context.Background(), nil, testenv.Env(map[string]string{"INGEST_ADDR": "0.0.0.0:18080"}), io.Discard, io.Discard)
	for _, s := range []string{"INGEST_AUTH_TOKEN", "INGEST_AUTH_TOKENS", "127.0.0.1", "INGEST_ALLOW_NO_AUTH=true"} {
		if err == nil || !strings.Contains(err.Error(), s) {
			t.Errorf("refusal %q does not mention %s", err, s)
		}
	}
}

// TestOpenAPIOptIn: without a token, ingest serves on a loopback address as before, and beyond
// loopback only with INGEST_ALLOW_NO_AUTH=true, which it warns of and reports by metric.
func TestOpenAPIOptIn(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t)
	tests := []struct {
		name     string
		host     string
		env      map[string]string
		wantOpen bool
	}{
		{"loopback", "127.0.0.1", nil, false},
		{"every interface, opted in", "0.0.0.0", map[string]string{"INGEST_ALLOW_NO_AUTH": "true"}, true},
		{"every interface, with a token", "0.0.0.0", map[string]string{"INGEST_AUTH_TOKENS": "both1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := strings.TrimPrefix(testenv.FreeAddr(t), "127.0.0.1:")
			env := map[string]string{"VALKEY_ADDR": v.Addr, "INGEST_ADDR": tt.host + ":" + port}
			for k, val := range tt.env {
				env[k] = val
			}
			base := "http://127.0.0.1:" + port
			logs, stop := runReady(t, env, base)
			metrics := get(t, base+"/metrics", "")
			open := strings.Contains(metrics.body, "\nchatpipe_ingest_open_api 1")
			warned := strings.Contains(logs.String(), "INGEST_ALLOW_NO_AUTH=true")
			if open != tt.wantOpen || warned != tt.wantOpen {
				t.Errorf("open_api metric 1: %v, warning: %v; want %v\n%s", open, warned, tt.wantOpen, logs.String())
			}
			if _, ok := tt.env["INGEST_AUTH_TOKENS"]; !ok {
				if r := get(t, base+"/v1/messages/recent", ""); r.status != http.StatusOK {
					t.Errorf("GET recent without a token: %d, want 200 (no auth)", r.status)
				}
			}
			stop()
		})
	}
}

// runReady runs ingest in-process with env until stop, which fails the test unless run
// returned nil; it returns once base/readyz answers 200.
func runReady(t *testing.T, env map[string]string, base string) (logs *testenv.SyncBuffer, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	logs = &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, testenv.Env(env), logs, logs) }()
	testenv.WaitReady(t, base+"/readyz", 10*time.Second)
	return logs, func() {
		t.Helper()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run: %v\n%s", err, logs.String())
		}
	}
}

type answer struct {
	status int
	body   string
}

// get GETs url with a bearer token ("" for none).
func get(t *testing.T, url, token string) answer {
	t.Helper()
	return send(t, http.MethodGet, url, token, "")
}

func send(t *testing.T, method, url, token, body string) answer {
	t.Helper()
	a, err := trySend(method, url, token, body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func trySend(method, url, token, body string) (answer, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, string(b)}, nil
}

// TestTokenScopesAndRotation runs the binary as an operator would: scoped tokens from a file,
// then a rotation by rewriting the file and SIGHUP while clients keep sending, with no request
// failing; a bad file on SIGHUP keeps the tokens in use. Also the refusals' exit status 2.
func TestTokenScopesAndRotation(t *testing.T) {
	testenv.Slow(t, "builds the binary")
	t.Parallel()
	bin := filepath.Join(testenv.Build(t, "", "."), "ingest")
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"INGEST_ADDR=0.0.0.0:18081"}, "INGEST_AUTH_TOKEN"},
		{[]string{"INGEST_ADDR=127.0.0.1:18081", "DATABASE_URL=postgres://127.0.0.1:1/db", "DATABASE_URL_FILE=" + bin}, "set DATABASE_URL or DATABASE_URL_FILE, not both"},
	} {
		cmd := exec.Command(bin)
		cmd.Env = c.env
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		line := strings.TrimSpace(stderr.String())
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Contains(line, "\n") || !strings.Contains(line, c.want) {
			t.Errorf("%v: err %v, stderr %q; want exit 2 and one line saying %q", c.env, err, line, c.want)
		}
	}

	v := testenv.StartValkey(t)
	dsn := testenv.Postgres(t)
	testenv.MigratedPool(t, dsn, 1)
	file := filepath.Join(t.TempDir(), "tokens")
	writeSecret(t, file, "read:r1,write:w1,both1\n")
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	logs := &testenv.SyncBuffer{}
	cmd := startBinary(t, bin, addr, logs, "VALKEY_ADDR="+v.Addr, "DATABASE_URL="+dsn, "INGEST_AUTH_TOKENS_FILE="+file, "RATE_LIMIT=1000000", "RATE_WINDOW=1s")

	history := base + "/v1/messages/history"
	post := func(token string) answer {
		return send(t, http.MethodPost, base+"/v1/messages", token, `{"owner_id":"alice","content":"hi"}`)
	}
	checks := []struct {
		what  string
		got   answer
		want  int
		error string
	}{
		{"r1 reads history", get(t, history, "r1"), http.StatusOK, ""},
		{"r1 posts", post("r1"), http.StatusForbidden, `"forbidden"`},
		{"w1 posts", post("w1"), http.StatusAccepted, ""},
		{"w1 reads history", get(t, history, "w1"), http.StatusForbidden, `"forbidden"`},
		{"both1 posts", post("both1"), http.StatusAccepted, ""},
		{"both1 reads history", get(t, history, "both1"), http.StatusOK, ""},
		{"an unknown token posts", post("nope"), http.StatusUnauthorized, `"unauthorized"`},
		{"an unknown token reads", get(t, history, "nope"), http.StatusUnauthorized, `"unauthorized"`},
		{"no token", get(t, history, ""), http.StatusUnauthorized, `"unauthorized"`},
	}
	for _, c := range checks {
		if c.got.status != c.want || !strings.Contains(c.got.body, c.error) {
			t.Errorf("%s: %d %s, want %d %s", c.what, c.got.status, c.got.body, c.want, c.error)
		}
	}

	// Rotation of both1 to both2, as the README walks through it, while two clients keep
	// sending: each with a token valid at every moment. No request may fail.
	var current atomic.Value
	current.Store("both1")
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for _, client := range []func() (answer, error){
		func() (answer, error) { return trySend(http.MethodGet, history, current.Load().(string), "") },
		func() (answer, error) {
			return trySend(http.MethodPost, base+"/v1/messages", current.Load().(string), `{"owner_id":"bob","content":"rotating"}`)
		},
		func() (answer, error) { return trySend(http.MethodGet, base+"/v1/messages/recent", "r1", "") },
	} {
		wg.Go(func() {
			for i := 0; i < 100_000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				a, err := client()
				sent.Add(1)
				if err != nil || a.status >= 300 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%d %s %v", a.status, a.body, err))
				}
			}
		})
	}
	reloads := func() int { return strings.Count(logs.String(), "SIGHUP: tokens read again") }
	hup := func(want int) {
		t.Helper()
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "the tokens read again", 10*time.Second, func() bool { return reloads() >= want })
	}
	time.Sleep(200 * time.Millisecond)
	writeSecret(t, file, "read:r1,write:w1,both1,both2\n") // 1. add the new token
	hup(1)
	if a := get(t, history, "both2"); a.status != http.StatusOK {
		t.Fatalf("the added token: %d %s, want 200", a.status, a.body)
	}
	current.Store("both2") // 2. the clients move to it
	time.Sleep(200 * time.Millisecond)
	writeSecret(t, file, "read:r1,write:w1,both2\n") // 3. remove the old one
	hup(2)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || sent.Load() < 30 {
		t.Errorf("%d of %d requests failed during the rotation (first: %v), want 0 of at least 30", failed.Load(), sent.Load(), firstFailure.Load())
	}
	t.Logf("%d requests during the rotation, %d failed", sent.Load(), failed.Load())
	if a := get(t, history, "both1"); a.status != http.StatusUnauthorized {
		t.Errorf("the removed token: %d, want 401", a.status)
	}
	if a := post("both2"); a.status != http.StatusAccepted {
		t.Errorf("the new token posts: %d %s, want 202", a.status, a.body)
	}

	// A broken file on SIGHUP (an editor's half-written save, a stray comma) leaves the
	// tokens in use as they were, logged, and counted.
	for i, broken := range []string{"read:r1,write:\n", "", "bad token\n"} {
		writeSecret(t, file, broken)
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "the failed reload logged", 10*time.Second, func() bool {
			return strings.Count(logs.String(), "reading the tokens again failed") == i+1
		})
		if a := get(t, history, "both2"); a.status != http.StatusOK {
			t.Errorf("after a broken file %q: both2 %d, want 200 (the tokens in use stay)", broken, a.status)
		}
	}
	if m := get(t, base+"/metrics", ""); !strings.Contains(m.body, `chatpipe_ingest_auth_reloads_total{result="failed"} 3`) ||
		!strings.Contains(m.body, `chatpipe_ingest_auth_reloads_total{result="ok"} 2`) || !strings.Contains(m.body, `chatpipe_ingest_auth_tokens{scope="both"} 1`) {
		t.Errorf("auth metrics wrong:\n%s", grepLines(m.body, "chatpipe_ingest_auth"))
	}
	for _, token := range []string{"r1", "w1", "both1", "both2"} {
		if strings.Contains(logs.String(), "="+token) || strings.Contains(logs.String(), `"`+token+`"`) {
			t.Errorf("token %s is in the logs:\n%s", token, logs.String())
		}
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestSecretFiles: the Valkey password and the DSN read from files, as Docker and Kubernetes
// secrets are mounted, with a password-protected Valkey: ingest accepts and reads history.
func TestSecretFiles(t *testing.T) {
	t.Parallel()
	v := testenv.StartValkey(t, "--requirepass", "vk-file-pass")
	dsn := testenv.Postgres(t)
	testenv.MigratedPool(t, dsn, 1)
	dir := t.TempDir()
	writeSecret(t, filepath.Join(dir, "valkey"), "vk-file-pass\n")
	writeSecret(t, filepath.Join(dir, "dsn"), dsn+"\n")
	addr := testenv.FreeAddr(t)
	env := map[string]string{"VALKEY_ADDR": v.Addr, "INGEST_ADDR": addr,
		"VALKEY_PASSWORD_FILE": filepath.Join(dir, "valkey"), "DATABASE_URL_FILE": filepath.Join(dir, "dsn")}
	base := "http://" + addr
	logs, stop := runReady(t, env, base)
	if a := send(t, http.MethodPost, base+"/v1/messages", "", `{"owner_id":"alice","content":"from files"}`); a.status != http.StatusAccepted {
		t.Fatalf("post: %d %s", a.status, a.body)
	}
	if a := get(t, base+"/v1/messages/history", ""); a.status != http.StatusOK || !strings.Contains(a.body, "from files") {
		t.Fatalf("history: %d %s, want 200 with the message (PostgreSQL reached through DATABASE_URL_FILE)", a.status, a.body)
	}
	stop()
	if strings.Contains(logs.String(), "vk-file-pass") {
		t.Errorf("the password is in the logs:\n%s", logs.String())
	}
}
