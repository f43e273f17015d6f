// Package store is chatpipe's store on Valkey as its callers see it. Today it holds the error
// vocabulary that ingest, history and the tails act on; the store itself, one for both key
// layouts, comes here next (docs/store.md).
package store

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Callers compare with errors.Is.
var (
	// ErrRateLimited: the user is over the rate limit; see RateLimitedError for the retry time.
	ErrRateLimited = errors.New("rate limited")
	// ErrBacklogFull: the flush stream is at its cap; nothing was enqueued.
	ErrBacklogFull = errors.New("flush backlog full")
	// ErrNotFound: the cache id was never issued.
	ErrNotFound = errors.New("message not found")
	// ErrUnavailable: Valkey could not be reached, did not answer in time, or cannot take
	// writes for now (READONLY or MASTERDOWN during a failover, LOADING, NOREPLICAS, ...). The
	// operation may or may not have run; a retry with the same client_msg_id is safe.
	ErrUnavailable = errors.New("valkey unavailable")
	// ErrFull: Valkey refused the write with OOM (used memory above maxmemory under
	// noeviction). Nothing was written; retry once the flush workers have drained the backlog.
	ErrFull = errors.New("valkey is full")
	// ErrNotDurable: the message was accepted, but too few replicas (or no fsync) acknowledged it
	// within the durability timeout; see NotDurableError.
	ErrNotDurable = errors.New("not durable")
)

// NotDurableError is an accepted message whose write was not confirmed durable in time. It is
// enqueued all the same (Valkey cannot take it back); a retry with the same client_msg_id
// returns the same id once the write is durable. It wraps ErrNotDurable.
type NotDurableError struct {
	// CacheID is the id the message was given.
	CacheID int64
	// Detail says what fell short.
	Detail string
}

func (e *NotDurableError) Error() string {
	return fmt.Sprintf("message %d not durable: %s", e.CacheID, e.Detail)
}

// Unwrap makes errors.Is(err, ErrNotDurable) hold.
func (e *NotDurableError) Unwrap() error { return ErrNotDurable }

// RateLimitedError is returned when a user is over the rate limit. It wraps ErrRateLimited.
type RateLimitedError struct {
	// RetryAfter is how long until the user may send again.
	RetryAfter time.Duration
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limited, retry after %s", e.RetryAfter)
}

// Unwrap makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitedError) Unwrap() error { return ErrRateLimited }

// Errors of an edit.
var (
	// ErrVersionMismatch: an edit's If-Match named another version than the message's current
	// one; see VersionMismatchError.
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrLookup: an edit asked the script to find its message (Edit.Found 0), which is not in
	// its channel's backlog index (or of a shape the script does not splice): find it and edit
	// it whole. Nothing was written.
	ErrLookup = errors.New("message not in its backlog index")
	// ErrNotAuthor: the message the script found is another user's. Nothing was written.
	ErrNotAuthor = errors.New("not the author")
)

// Errors of a reaction.
var (
	// ErrNotParticipant: a reaction to a private message by neither of its users.
	ErrNotParticipant = errors.New("not one of the message's users")
	// ErrTooManyReactions: the message has the most distinct emoji allowed.
	ErrTooManyReactions = errors.New("too many distinct reactions")
)

// VersionMismatchError is an edit refused because the message is at another version than the
// one its If-Match named. It wraps ErrVersionMismatch.
type VersionMismatchError struct {
	// Current is the message's current version.
	Current int64
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("the message is at version %d", e.Current)
}

// Unwrap makes errors.Is(err, ErrVersionMismatch) hold.
func (e *VersionMismatchError) Unwrap() error { return ErrVersionMismatch }
