package opscheck_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestMakeRunAnywhere runs `make run`'s start-up (scripts/run.sh, with the binaries make run
// builds) from a copy of the checkout in a 0700 folder whose path has a space, as make test
// runs (root here: PostgreSQL must then run as the postgres user, who cannot enter that
// folder). It must serve /healthz and accept a message that reaches PostgreSQL; a run killed
// with -9 must not block the next, which finds the first one's data; a Ctrl-C (SIGINT to the
// terminal's process group) must stop every process it started.
func TestMakeRunAnywhere(t *testing.T) {
	testenv.Slow(t, "starts every server twice")
	for _, bin := range []string{"prometheus", "valkey-server"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s not found: install it with: make deps", bin)
		}
	}
	private := t.TempDir() // 0700, as mktemp -d and root's home
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	checkout := filepath.Join(private, "my chatpipe")
	copyCheckout(t, checkout)
	bins := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	if err := os.MkdirAll(filepath.Join(checkout, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{"ingest", "flushworker"} {
		copyFile(t, filepath.Join(bins, b), filepath.Join(checkout, "bin", b), 0o755)
	}

	port := func() string {
		a := testenv.FreeAddr(t)
		return a[strings.LastIndexByte(a, ':')+1:]
	}
	ingest := "127.0.0.1:" + port()
	pgPort := port()
	env := append(os.Environ(),
		"VALKEY_PORT="+port(), "PG_PORT="+pgPort, "PROM_PORT="+port(),
		"WORKER_PORTS="+port()+" "+port(), "INGEST_ADDR="+ingest, "CONSOLE_ADDR=127.0.0.1:"+port())
	dsn := "postgres://postgres@127.0.0.1:" + pgPort + "/chatpipe?sslmode=disable"

	var dataDir string
	t.Cleanup(func() {
		// After a failure: whatever a killed run left behind, as the next run would stop it.
		pids, _ := runPids(checkout)
		for _, pid := range pids {
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if dataDir == "" {
			return
		}
		if pid, err := postmaster(dataDir); err == nil && alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGQUIT) // PostgreSQL's immediate shutdown
			for i := 0; i < 100 && alive(pid); i++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
		// The PostgreSQL folder lives outside the checkout as root: remove it as make clean does.
		if !strings.HasPrefix(dataDir, checkout) {
			_ = os.RemoveAll(dataDir)
		}
	})

	// First run: serve, accept, persist; then die by SIGKILL, leaving its servers behind.
	first := startRun(t, checkout, env)
	dataDir = first.dataDir
	testenv.WaitReady(t, "http://"+ingest+"/healthz", 10*time.Second)
	post(t, ingest, `{"owner_id":"alice","username":"Alice","content":"from the first run"}`)
	waitRows(t, dsn, 1)
	if err := syscall.Kill(first.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	stale := readPids(t, checkout)
	if len(stale) < 5 {
		t.Fatalf("the first run recorded %d processes in .run/pids, want valkey, ingest, workers, console and prometheus", len(stale))
	}

	// Second run: stops the leftovers, finds the first run's data, stops cleanly on Ctrl-C.
	second := startRun(t, checkout, env)
	if second.dataDir != first.dataDir {
		t.Fatalf("the second run keeps its data in %q, the first in %q", second.dataDir, first.dataDir)
	}
	for _, pid := range stale {
		if alive(pid) {
			t.Errorf("process %d of the killed run still runs", pid)
		}
	}
	testenv.WaitReady(t, "http://"+ingest+"/healthz", 10*time.Second)
	post(t, ingest, `{"owner_id":"bob","username":"Bob","content":"from the second run"}`)
	waitRows(t, dsn, 2)
	running := readPids(t, checkout)
	postmaster := postmasterPid(t, second.dataDir)
	// Ctrl-C in a terminal signals the whole foreground process group.
	if err := syscall.Kill(-second.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- second.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		_ = syscall.Kill(-second.cmd.Process.Pid, syscall.SIGKILL)
		t.Fatalf("run.sh did not stop within 40s of SIGINT; output:\n%s", second.out.String())
	}
	if !strings.Contains(second.out.String(), "run: stopped") {
		t.Errorf("run.sh did not say it stopped; output:\n%s", second.out.String())
	}
	for _, pid := range append(running, postmaster) {
		if alive(pid) {
			t.Errorf("process %d still runs after Ctrl-C", pid)
		}
	}
}

type run struct {
	cmd     *exec.Cmd
	out     output
	dataDir string
}

// output is a run's stdout and stderr, a file: the servers it leaves behind when killed
// hold it open, which would keep a pipe's reader (and so exec.Cmd.Wait) waiting.
type output string

func (o output) String() string {
	b, _ := os.ReadFile(string(o))
	return string(b)
}

var dataLine = regexp.MustCompile(`run: data .* postgres: (.*), logs: `)

// startRun starts scripts/run.sh in its own process group and waits until it says it is ready.
func startRun(t *testing.T, checkout string, env []string) run {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "run-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := output(f.Name())
	cmd := exec.Command("bash", "scripts/run.sh")
	cmd.Dir, cmd.Env = checkout, env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		// Only to notice an early exit (a zombie until the test's Wait).
		for alive(cmd.Process.Pid) {
			time.Sleep(100 * time.Millisecond)
		}
		close(exited)
	}()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) })
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(out.String(), "run: ready") {
		select {
		case <-exited:
			t.Fatalf("run.sh exited before it was ready:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("run.sh not ready within 90s:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	m := dataLine.FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("run.sh did not say where its PostgreSQL data lives:\n%s", out.String())
	}
	return run{cmd: cmd, out: out, dataDir: m[1]}
}

func post(t *testing.T, addr, body string) {
	t.Helper()
	res, err := http.Post("http://"+addr+"/v1/messages", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/messages: %d %s", res.StatusCode, b)
	}
}

func waitRows(t *testing.T, dsn string, want int) {
	t.Helper()
	var n int
	testenv.WaitFor(t, fmt.Sprintf("%d rows in chat_messages", want), 20*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return false
		}
		defer conn.Close(ctx)
		return conn.QueryRow(ctx, "SELECT count(*) FROM chat_messages").Scan(&n) == nil && n == want
	})
}

func readPids(t *testing.T, checkout string) []int {
	t.Helper()
	pids, err := runPids(checkout)
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// runPids reads the processes a run recorded in .run/pids ("pid exe" lines).
func runPids(checkout string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(checkout, ".run", "pids"))
	if err != nil {
		return nil, err
	}
	var pids []int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf(".run/pids: %q", sc.Text())
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

func postmasterPid(t *testing.T, dataDir string) int {
	t.Helper()
	pid, err := postmaster(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// postmaster reads the pid of the PostgreSQL server of dataDir from its postmaster.pid.
func postmaster(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.SplitN(string(b), "\n", 2)[0])
}

// alive reports whether pid runs (a zombie counts as gone: its parent has not reaped it yet).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// copyCheckout copies what make run uses from this checkout: the script and the Prometheus rules.
func copyCheckout(t *testing.T, dst string) {
	t.Helper()
	for _, f := range []string{"scripts/run.sh", "prometheus/alerts.yml"} {
		mode := os.FileMode(0o644)
		if strings.HasSuffix(f, ".sh") {
			mode = 0o755
		}
		copyFile(t, filepath.Join(root, f), filepath.Join(dst, f), mode)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
