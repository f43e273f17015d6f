package pg

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	//go:embed wal_position.sql
	walPositionSQL string
	//go:embed standby_replay.sql
	standbyReplaySQL string
)

// Standbys tells how far the primary's streaming standbys have replayed its WAL, for readers
// of a standby (ingest's history) that must find on it every row the flush streams no longer
// hold: the workers trim an acked entry only once Want standbys replayed its commit.
type Standbys struct {
	pool *pgxpool.Pool
	want int
	// A replay position is cached briefly: every consumer of a worker asks each trim, and an
	// older position is only more cautious.
	mu     sync.Mutex
	cached Replay
	at     time.Time
}

// Replay is how far the standbys have replayed.
type Replay struct {
	// LSN is the lowest replay position, in bytes of WAL, of the Want most advanced standbys;
	// 0 when fewer than Want report one.
	LSN uint64
	// Standbys is how many of them report a replay position (at most Want).
	Standbys int
	// Lag is the largest replay lag among them (a commit to its replay).
	Lag time.Duration
}

// NewStandbys returns the standbys of the primary that pool connects to, of which want must
// have replayed a commit.
func NewStandbys(pool *pgxpool.Pool, want int) *Standbys { return &Standbys{pool: pool, want: want} }

// Want is how many standbys must have replayed a commit.
func (s *Standbys) Want() int { return s.want }

var (
	// ErrStandbysHidden: the role cannot read the standbys' replay positions.
	ErrStandbysHidden = errors.New("the role cannot read pg_stat_replication's replay positions: GRANT pg_monitor TO it")
	// ErrNotPrimary: the server is itself a standby.
	ErrNotPrimary = errors.New("the server is a standby: the workers' DATABASE_URL must be the primary")
)

// Check fails when the pool does not reach a primary, or when its role cannot see the
// standbys' positions (pg_stat_replication shows them only to superusers and members of
// pg_read_all_stats, part of pg_monitor).
func (s *Standbys) Check(ctx context.Context) error {
	var recovery, stats bool
	err := s.pool.QueryRow(ctx, "SELECT pg_is_in_recovery(), pg_has_role(current_user, 'pg_read_all_stats', 'MEMBER')").Scan(&recovery, &stats)
	switch {
	case err != nil:
		return fmt.Errorf("checking the standbys: %w", err)
	case recovery:
		return ErrNotPrimary
	case !stats:
		return ErrStandbysHidden
	}
	return nil
}

// Position returns the primary's WAL position now: every transaction committed before the
// call is at or below it.
func (s *Standbys) Position(ctx context.Context) (uint64, error) {
	var lsn int64
	if err := s.pool.QueryRow(ctx, walPositionSQL).Scan(&lsn); err != nil {
		return 0, fmt.Errorf("reading the WAL position: %w", err)
	}
	return uint64(lsn), nil
}

// Replayed returns how far the standbys have replayed, at most 250 ms old.
func (s *Standbys) Replayed(ctx context.Context) (Replay, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.at.IsZero() && time.Since(s.at) < 250*time.Millisecond {
		return s.cached, nil
	}
	var n int
	var lsn int64
	var lag float64
	if err := s.pool.QueryRow(ctx, standbyReplaySQL, s.want).Scan(&n, &lsn, &lag); err != nil {
		return Replay{}, fmt.Errorf("reading the standbys' replay positions: %w", err)
	}
	r := Replay{Standbys: n, Lag: time.Duration(lag * float64(time.Second))}
	if n >= s.want {
		r.LSN = uint64(lsn)
	}
	s.cached, s.at = r, time.Now()
	return r, nil
}
