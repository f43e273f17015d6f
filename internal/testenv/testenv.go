// Package testenv gives tests real servers: each test its own valkey-server on a free loopback
// port, and a fresh database on one PostgreSQL server per test binary, started from the
// installed binaries (as the postgres user when the tests run as root). Everything started is
// stopped and removed when the test, or the test binary, ends, also when a test fails.
//
// A missing binary fails the test with the binary's name and the command that installs it;
// nothing is skipped. Set CHATPIPE_TEST_POSTGRES_URL to use a running PostgreSQL instead
// (a role allowed to create databases).
package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"go.uber.org/goleak"
)

// Install commands named in failures.
const (
	valkeyInstall   = "make deps (or as root: add bookworm-backports to apt's sources, then apt-get install -t bookworm-backports valkey-server valkey-tools)"
	postgresInstall = "make deps (or as root: apt-get install postgresql)"
)

// Main runs the tests of a package, stops the servers this package started, and then, when
// the tests passed, fails the package if goroutines are left running (goleak): a goroutine a
// test forgot to stop is a leak in the code it tests, or in the test. opts name goroutines a
// package knowingly leaves (goleak.IgnoreTopFunction).
// Use it from TestMain: func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }.
func Main(m *testing.M, opts ...goleak.Option) int {
	code := m.Run()
	stopPostgres()
	if code == 0 {
		// valkey-go's cluster client leaves a topology refresh asleep for up to 5 s after Close;
		// it ends by itself.
		opts = append(opts, goleak.IgnoreAnyFunction("github.com/valkey-io/valkey-go.(*clusterClient)._refresh.func2"))
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak: goroutines left running after the tests passed:", err)
			code = 1
		}
	}
	return code
}

// freePort returns a loopback port that was free a moment ago. Callers retry on a bind failure,
// since another process may take it first.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lookBinary finds name on PATH or in dirs, or fails with the install command.
func lookBinary(name, install string, dirs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found (looked in PATH and %v): install it with: %s", name, dirs, install)
}

// postgresBinDirs lists the installed PostgreSQL versions' bin folders, newest first.
func postgresBinDirs() []string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	if d := os.Getenv("PG_BIN"); d != "" {
		dirs = append([]string{d}, dirs...)
	}
	return dirs
}
