package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/valkey-io/valkey-go"
)

// Valkey is a valkey-server of one test.
type Valkey struct {
	// Addr is host:port on loopback.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port int
	args []string
	tls  []string // TLS server arguments; the port then serves TLS only
	// conf, when set, is the configuration file of a Sentinel (it rewrites it as it learns).
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartValkey starts a valkey-server for t, with extra server arguments (for example
// "--requirepass", "secret"). It is stopped when t ends.
func StartValkey(t testing.TB, args ...string) *Valkey {
	t.Helper()
	return startValkey(t, nil, args)
}

// StartValkeyTLS starts a valkey-server that serves only TLS, with the server's certificate
// and key files, on Addr.
func StartValkeyTLS(t testing.TB, certFile, keyFile, caFile string) *Valkey {
	t.Helper()
	return startValkey(t, []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile,
		"--tls-ca-cert-file", caFile, "--tls-auth-clients", "no"}, nil)
}

func startValkey(t testing.TB, tls, args []string) *Valkey {
	t.Helper()
	return launch(t, &Valkey{tls: tls, args: args})
}

// launch starts v on a free port, retrying when another process took the port first.
func launch(t testing.TB, v *Valkey) *Valkey {
	t.Helper()
	bin, err := lookBinary("valkey-server", valkeyInstall)
	if err != nil {
		t.Fatal(err)
	}
	v.t, v.bin, v.dir = t, bin, t.TempDir()
	var lastErr error
	for range 5 {
		if v.port, err = freePort(); err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		v.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(v.port))
		if lastErr = v.start(); lastErr == nil {
			t.Cleanup(v.Stop)
			return v
		}
	}
	t.Fatalf("starting valkey-server: %v", lastErr)
	return nil
}

func (v *Valkey) start() error {
	port := []string{"--port", strconv.Itoa(v.port)}
	if v.tls != nil {
		port = append([]string{"--port", "0", "--tls-port", strconv.Itoa(v.port)}, v.tls...)
	}
	common := []string{"--bind", "127.0.0.1", "--dir", v.dir, "--protected-mode", "no",
		"--logfile", filepath.Join(v.dir, "valkey.log")}
	args := append(append(port, common...), append([]string{"--save", "", "--appendonly", "no"}, v.args...)...)
	if v.conf != "" {
		args = append(append([]string{v.conf, "--sentinel"}, port...), common...)
	}
	cmd := exec.Command(v.bin, args...)
	// The server dies with the test binary, even when the binary is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(v.dir, "valkey.log"))
			return fmt.Errorf("valkey-server exited at start: %s", lastLines(log, 5))
		default:
		}
		if c, err := net.DialTimeout("tcp", v.Addr, 100*time.Millisecond); err == nil {
			c.Close()
			v.cmd, v.done = cmd, done
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return fmt.Errorf("valkey-server did not listen on %s within 10s", v.Addr)
}

// Stop kills the server. The port stays reserved for Restart.
func (v *Valkey) Stop() {
	if v.cmd == nil {
		return
	}
	_ = v.cmd.Process.Kill()
	<-v.done
	v.cmd = nil
}

// Restart starts the stopped server again on the same address, with an empty dataset.
func (v *Valkey) Restart() {
	v.t.Helper()
	if err := v.start(); err != nil {
		v.t.Fatalf("restarting valkey-server on %s: %v", v.Addr, err)
	}
}

// Pause stops the server's process (SIGSTOP) until Resume: it keeps its connections but answers
// nothing, like a hung server.
func (v *Valkey) Pause() { _ = v.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (v *Valkey) Resume() { _ = v.cmd.Process.Signal(syscall.SIGCONT) }

// Pid is the server's process id (0 while stopped), for measuring its CPU and memory.
func (v *Valkey) Pid() int {
	if v.cmd == nil {
		return 0
	}
	return v.cmd.Process.Pid
}

// Client returns a client of the server, closed when the test ends.
func (v *Valkey) Client(t testing.TB) valkey.Client {
	t.Helper()
	c, err := valkey.NewClient(valkey.ClientOption{
		InitAddress:       []string{v.Addr},
		DisableCache:      true,
		ForceSingleClient: true, // this one server, also when it is a cluster node or a Sentinel
	})
	if err != nil {
		t.Fatalf("connecting to valkey at %s: %v", v.Addr, err)
	}
	t.Cleanup(c.Close)
	return c
}

// Do runs one command on c for a test, failing the test on error, and returns the reply.
func Do(t testing.TB, c valkey.Client, cmd ...string) valkey.ValkeyResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r := c.Do(ctx, c.B().Arbitrary(cmd...).Build())
	if err := r.Error(); err != nil && !valkey.IsValkeyNil(err) {
		t.Fatalf("%v: %v", cmd, err)
	}
	return r
}

func lastLines(b []byte, n int) string {
	end := len(b)
	for i := len(b) - 1; i >= 0 && n >= 0; i-- {
		if b[i] == '\n' {
			n--
			if n < 0 {
				return string(b[i+1 : end])
			}
		}
	}
	return string(b[:end])
}

// StartReplica starts a replica of primary (with the extra server arguments) and returns once
// the primary lists it online.
func StartReplica(t testing.TB, primary *Valkey, args ...string) *Valkey {
	t.Helper()
	return StartReplicaVia(t, primary, primary.Addr, args...)
}

// StartReplicaVia is StartReplica through addr: a proxy in front of the primary.
func StartReplicaVia(t testing.TB, primary *Valkey, addr string, args ...string) *Valkey {
	t.Helper()
	c := primary.Client(t)
	online := func() int {
		s, _ := Do(t, c, "INFO", "replication").ToString()
		return strings.Count(s, "state=online")
	}
	before := online()
	host, port, _ := strings.Cut(addr, ":")
	replica := StartValkey(t, append([]string{"--replicaof", host, port}, args...)...)
	WaitFor(t, "the replica in sync", 10*time.Second, func() bool { return online() > before })
	return replica
}
