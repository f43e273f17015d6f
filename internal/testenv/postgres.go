package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chatpipe/chatpipe/internal/pg"
)

// pgServer is the one PostgreSQL server of this test binary.
var pgServer struct {
	once  sync.Once
	admin string // DSN of a role that may create databases
	err   error
	cmd   *exec.Cmd
	done  chan struct{}
	dir   string
	// what runPostgres needs to start the server again (RestartPostgres)
	cred *syscall.Credential
	bin  string
	data string
	port int
}

// Postgres returns the DSN of a fresh, empty database for t, dropped when t ends.
// The server is started on first use and stopped by Main.
func Postgres(t testing.TB) string {
	t.Helper()
	pgServer.once.Do(func() {
		if u := os.Getenv("CHATPIPE_TEST_POSTGRES_URL"); u != "" {
			pgServer.admin = u
			return
		}
		pgServer.admin, pgServer.err = startPostgres()
	})
	if pgServer.err != nil {
		t.Fatalf("postgres: %v", pgServer.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgServer.admin)
	if err != nil {
		t.Fatalf("postgres: connecting as admin: %v", err)
	}
	defer conn.Close(ctx)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "chatpipe_test_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("postgres: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgServer.admin)
		if err != nil {
			t.Errorf("postgres: connecting to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("postgres: dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(pgServer.admin)
	if err != nil {
		t.Fatalf("postgres: admin DSN is not a URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// DurablePostgres, set before the first Postgres call (in TestMain), runs the server with
// PostgreSQL's default durability (fsync, synchronous commit, full-page writes) instead of the
// throwaway settings: benchmarks that claim "durable rows" must pay for them.
var DurablePostgres bool

// startPostgres runs initdb and postgres in a temporary folder on a free loopback port, tuned
// for throwaway data (no fsync) unless DurablePostgres is set. As root it runs them as the postgres user, which PostgreSQL
// requires.
func startPostgres() (string, error) {
	dirs := postgresBinDirs()
	initdb, err := lookBinary("initdb", postgresInstall, dirs...)
	if err != nil {
		return "", err
	}
	// The server must be the one of initdb's version: the binary beside it.
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	if _, err := os.Stat(postgres); err != nil {
		return "", fmt.Errorf("postgres not found beside %s: install it with: %s", initdb, postgresInstall)
	}
	dir, err := os.MkdirTemp("", "chatpipe-pg-")
	if err != nil {
		return "", err
	}
	pgServer.dir = dir
	cred, err := postgresCredential()
	if err != nil {
		return "", err
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return "", err
		}
	}
	data := filepath.Join(dir, "data")
	out, err := asUser(cred, exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("initdb: %v: %s", err, lastLines(out, 5))
	}
	cmd, done, port, err := launchOnFreePort(cred, postgres, data, dir)
	if err != nil {
		return "", err
	}
	pgServer.cmd, pgServer.done = cmd, done
	pgServer.cred, pgServer.bin, pgServer.data, pgServer.port = cred, postgres, data, port
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), nil
}

// launchOnFreePort starts a server on data on a free loopback port, trying again on another
// when one is taken between the look-up and the bind.
func launchOnFreePort(cred *syscall.Credential, bin, data, dir string) (*exec.Cmd, chan struct{}, int, error) {
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			return nil, nil, 0, err
		}
		cmd, done, err := launchPostgres(cred, bin, data, dir, port)
		if err == nil {
			return cmd, done, port, nil
		}
		lastErr = err
	}
	return nil, nil, 0, lastErr
}

func runPostgres(cred *syscall.Credential, bin, data, dir string, port int) error {
	cmd, done, err := launchPostgres(cred, bin, data, dir, port)
	if err == nil {
		pgServer.cmd, pgServer.done = cmd, done
	}
	return err
}

// launchPostgres starts a server on data and waits until it accepts connections.
func launchPostgres(cred *syscall.Credential, bin, data, dir string, port int) (*exec.Cmd, chan struct{}, error) {
	logPath := filepath.Join(dir, "postgres.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	defer logf.Close()
	if cred != nil {
		_ = logf.Chown(int(cred.Uid), int(cred.Gid))
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "max_connections=400", "-c", "shared_buffers=128MB"}
	if !DurablePostgres {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	cmd := asUser(cred, exec.Command(bin, args...))
	cmd.Stdout, cmd.Stderr = logf, logf
	// SIGQUIT is an immediate shutdown: enough for a throwaway server whose test binary died.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=1", port)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			log, _ := os.ReadFile(logPath)
			return nil, nil, fmt.Errorf("postgres exited at start: %s", lastLines(log, 5))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return cmd, done, nil
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	<-done
	return nil, nil, errors.New("postgres did not accept connections within 30s")
}

// postgresCredential is the postgres user's when running as root, else nil (run as ourselves).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres user to start PostgreSQL: %w (install it with: %s)", err, postgresInstall)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func asUser(cred *syscall.Credential, cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// The postgres user may not be able to read the caller's working folder.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

// RestartPostgres stops the test binary's PostgreSQL (fast shutdown: sessions are cut), keeps
// it down for downtime, and starts it again on the same port with the same data. Only for a
// package whose tests all expect it, as the server is shared.
func RestartPostgres(t testing.TB, downtime time.Duration) {
	t.Helper()
	if pgServer.cmd == nil {
		t.Fatal("RestartPostgres: no PostgreSQL started by this test binary")
	}
	_ = pgServer.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-pgServer.done:
	case <-time.After(30 * time.Second):
		t.Fatal("RestartPostgres: the server did not stop within 30s")
	}
	time.Sleep(downtime)
	if err := runPostgres(pgServer.cred, pgServer.bin, pgServer.data, pgServer.dir, pgServer.port); err != nil {
		t.Fatalf("RestartPostgres: %v", err)
	}
}

func stopPostgres() {
	if pgServer.cmd != nil {
		// SIGINT is PostgreSQL's fast shutdown.
		_ = pgServer.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-pgServer.done:
		case <-time.After(10 * time.Second):
			_ = pgServer.cmd.Process.Kill()
			<-pgServer.done
		}
	}
	if pgServer.dir != "" {
		_ = os.RemoveAll(pgServer.dir)
	}
}

// PostgresReplica starts a streaming replica of the test binary's PostgreSQL (pg_basebackup
// -R) that applies the primary's WAL applyDelay late (recovery_min_apply_delay), and returns
// dsn (a database of the primary, from Postgres) rewritten to the replica. Stopped when t ends.
func PostgresReplica(t testing.TB, dsn string, applyDelay time.Duration) string {
	t.Helper()
	if pgServer.cmd == nil {
		t.Fatal("PostgresReplica: no PostgreSQL started by this test binary (CHATPIPE_TEST_POSTGRES_URL is not replicated here)")
	}
	// Beside the server's binary (through a link, as /usr/local/bin/postgres may be), else
	// where PostgreSQL's are installed.
	basebackup := "pg_basebackup"
	if real, err := filepath.EvalSymlinks(pgServer.bin); err == nil {
		basebackup = filepath.Join(filepath.Dir(real), "pg_basebackup")
	}
	if _, err := os.Stat(basebackup); err != nil {
		if basebackup, err = lookBinary("pg_basebackup", postgresInstall, postgresBinDirs()...); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := os.MkdirTemp("", "chatpipe-pg-replica-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if c := pgServer.cred; c != nil {
		if err := os.Chown(dir, int(c.Uid), int(c.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	out, err := asUser(pgServer.cred, exec.Command(basebackup, "-h", "127.0.0.1", "-p", strconv.Itoa(pgServer.port),
		"-U", "postgres", "-D", data, "-R", "-X", "stream", "--no-sync")).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_basebackup: %v: %s", err, lastLines(out, 5))
	}
	conf := fmt.Sprintf("\nrecovery_min_apply_delay = '%dms'\nhot_standby = on\n", applyDelay.Milliseconds())
	f, err := os.OpenFile(filepath.Join(data, "postgresql.auto.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd, done, port, err := launchOnFreePort(pgServer.cred, pgServer.bin, data, dir)
	if err != nil {
		t.Fatalf("replica: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = fmt.Sprintf("127.0.0.1:%d", port)
	return u.String()
}

// MigratedPool connects to dsn with at most conns connections, closed when t ends, and applies
// chatpipe's migrations to it, as `flushworker migrate` does.
func MigratedPool(t testing.TB, dsn string, conns int32) *pgxpool.Pool {
	t.Helper()
	pool, err := pg.Connect(context.Background(), dsn, conns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pg.Migrate(context.Background(), pool, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return pool
}
