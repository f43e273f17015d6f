package testenv

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestMissingBinaryNamesInstallCommand(t *testing.T) {
	t.Parallel()
	_, err := lookBinary("valkey-server-that-is-not-there", valkeyInstall, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "valkey-server-that-is-not-there") || !strings.Contains(err.Error(), "apt-get install") {
		t.Fatalf("err = %v, want the binary's name and the install command", err)
	}
}

func TestValkeyIsolated(t *testing.T) {
	t.Parallel()
	a, b := StartValkey(t), StartValkey(t)
	if a.Addr == b.Addr {
		t.Fatalf("two tests share %s", a.Addr)
	}
	ca, cb := a.Client(t), b.Client(t)
	Do(t, ca, "SET", "k", "a")
	if v := Do(t, cb, "GET", "k"); v.Error() == nil {
		t.Fatalf("b sees a's key")
	}
	a.Stop()
	a.Restart()
}

func TestPostgresFreshDatabases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	d1, d2 := Postgres(t), Postgres(t)
	if d1 == d2 {
		t.Fatal("two calls gave one database")
	}
	c1, err := pgx.Connect(ctx, d1)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close(ctx)
	if _, err := c1.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	c2, err := pgx.Connect(ctx, d2)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	if _, err := c2.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatalf("the second database is not fresh: %v", err)
	}
}
