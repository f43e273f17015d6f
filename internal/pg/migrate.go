package pg

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migration/*.sql
var migrationFS embed.FS

//go:embed migrate_prepare.sql
var migratePrepareSQL string

// migrationLock is the advisory lock key that serializes migrations across replicas
// ("chatpipe" in ASCII).
const migrationLock int64 = 0x63686174_70697065

// Migration is one numbered schema step.
type Migration struct {
	Version int
	Name    string
	Up      string
}

// noTransaction, as a migration's first line, runs its statements one by one outside a
// transaction: what CREATE INDEX CONCURRENTLY needs. Each statement must then be safe to run
// again, since a failure leaves the ones before it applied.
const noTransaction = "-- chatpipe:no-transaction"

const recordMigrationSQL = "INSERT INTO chatpipe_schema_migrations (version, name) VALUES ($1, $2)"

// NoTransaction reports whether m runs outside a transaction.
func (m Migration) NoTransaction() bool { return strings.HasPrefix(m.Up, noTransaction+"\n") }

// applyEach runs the statements of m (separated by a ";" that ends a line) one at a time, then
// records m.
func applyEach(ctx context.Context, conn *pgx.Conn, m Migration) error {
	for stmt := range strings.SplitSeq(m.Up, ";\n") {
		if strings.TrimSpace(stripComments(stmt)) == "" {
			continue
		}
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	_, err := conn.Exec(ctx, recordMigrationSQL, m.Version, m.Name)
	return err
}

// stripComments drops the "--" comment lines of a statement.
func stripComments(stmt string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(stmt, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Migrations returns the embedded migrations in order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFS, "migration/*.up.sql")
	if err != nil {
		return nil, err
	}
	var ms []Migration
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "migration/"), ".up.sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNN_name.up.sql", path)
		}
		body, err := migrationFS.ReadFile(path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: name, Up: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	for i := range ms {
		if ms[i].Version != i+1 {
			return nil, fmt.Errorf("migration versions must run 1, 2, 3…: found %d at position %d", ms[i].Version, i+1)
		}
	}
	return ms, nil
}

// Migrate applies the migrations not yet applied, each in its own transaction, under a
// session advisory lock so that replicas starting together never race: the first applies,
// the others wait and then find nothing to do. It returns how many it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (int, error) {
	return MigrateTo(ctx, pool, log, 0)
}

// MigrateTo is Migrate up to version last (0: all); the benchmarks run migrations one by one.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger, last int) (int, error) {
	ms, err := Migrations()
	if err != nil {
		return 0, err
	}
	if last > 0 {
		ms = ms[:min(last, len(ms))]
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: connecting: %w", err)
	}
	defer conn.Release()
	// Polled, not waited for: a session parked in pg_advisory_lock keeps a statement open, and
	// CREATE INDEX CONCURRENTLY (migration 004), run by the lock's holder, waits for every open
	// statement to end: the two would deadlock.
	for {
		var locked bool
		if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", migrationLock).Scan(&locked); err != nil {
			return 0, fmt.Errorf("migrate: taking the advisory lock: %w", err)
		}
		if locked {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("migrate: waiting for another replica's migration: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer func() {
		// A detached context: the lock must be released even when ctx has ended, or the
		// connection goes back to the pool still holding it.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	}()
	if _, err := conn.Exec(ctx, migratePrepareSQL); err != nil {
		return 0, fmt.Errorf("migrate: creating schema_migrations: %w", err)
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM chatpipe_schema_migrations")
	if err != nil {
		return 0, fmt.Errorf("migrate: reading applied versions: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return 0, fmt.Errorf("migrate: reading applied versions: %w", err)
	}
	for _, v := range versions {
		applied[v] = true
	}
	n := 0
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		var err error
		if m.NoTransaction() {
			err = applyEach(ctx, conn.Conn(), m)
		} else {
			err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, m.Up); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, recordMigrationSQL, m.Version, m.Name)
				return err
			})
		}
		if err != nil {
			return n, fmt.Errorf("migrate: applying %03d_%s: %w", m.Version, m.Name, err)
		}
		log.InfoContext(ctx, "applied migration", "version", m.Version, "name", m.Name)
		n++
	}
	return n, nil
}
