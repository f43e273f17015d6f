package pg

import (
	"context"
	"errors"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
)

// Permanent reports whether err is Postgres refusing the data itself: SQLSTATE class 22 (data
// exception: bad encoding, NUL, out of range) or 23 (integrity: CHECK, NOT NULL). Writing the
// same rows again cannot succeed, so they are isolated and dead-lettered.
func Permanent(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23":
		return true
	}
	return false
}

// Class names the kind of a transient error for metrics: the SQLSTATE class (08 connection,
// 40 serialization or deadlock, 53 resources, 57 shutdown, …), or "timeout" or "network" for
// errors that never reached Postgres. Every error that is not Permanent is transient: the
// entries stay pending and the write is retried, never dead-lettered.
func Class(err error) string {
	var pe *pgconn.PgError
	var ne net.Error
	switch {
	case errors.As(err, &pe) && len(pe.Code) == 5:
		return pe.Code[:2]
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "network"
}

// ErrUnknownOp: a record carries an operation Persist has no write for. DecodeEntry makes none,
// so it means a new message.Op reached PostgreSQL before its write did: a bug, not bad data.
var ErrUnknownOp = errors.New("unknown record operation")
