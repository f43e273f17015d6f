package store

import (
	"errors"
	"fmt"
	"time"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// Durability is how far a write must have gone before a message is answered as accepted.
type Durability string

const (
	// DurableNone answers once the script ran on the primary: a failover or a crash of the
	// primary before replication or fsync can lose the message.
	DurableNone Durability = "none"
	// DurableReplica waits (WAIT) until Config.DurableReplicas replicas acknowledged the write.
	DurableReplica Durability = "replica"
	// DurableFsync waits (WAITAOF 1 0) until the primary fsynced the write to its AOF.
	DurableFsync Durability = "fsync"
)

// IDs is how cache ids are made.
type IDs string

const (
	// CounterIDs are 1, 2, 3, … from INCR, as the list-based cache made them. A replica promoted
	// after missing the last increments gives their ids again.
	CounterIDs IDs = "counter"
	// ClockIDs floor the counter by the server's clock (1024 ids a millisecond since 2025), so
	// that no failover can make it go back (docs/scaleout.md). Ids are then about 6·10^13.
	ClockIDs IDs = "clock"
)

// Algorithm names a rate-limit algorithm.
type Algorithm string

const (
	// Fixed is a fixed window: INCR with an EXPIRE on the window's first hit. It is what the
	// list-based cache used, so its counters carry over.
	Fixed Algorithm = "fixed"
	// GCRA is the generic cell rate algorithm: smooth, one key per user, exact retry-after.
	GCRA Algorithm = "gcra"
)

// RateLimit is the rate limit shared by every ingest replica.
type RateLimit struct {
	Limit         int       `json:"limit"`
	WindowSeconds int       `json:"window_seconds"`
	Algorithm     Algorithm `json:"algorithm"`
}

// Rate-limit bounds, checked by Validate.
const (
	MaxLimit         = 1_000_000
	MaxWindowSeconds = 86_400
)

// FieldError names the setting of a RateLimit that is out of range.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate returns a *FieldError for the first field of r that is out of range.
func (r RateLimit) Validate() error {
	switch {
	case r.Limit < 1 || r.Limit > MaxLimit:
		return &FieldError{"limit", fmt.Sprintf("must be 1..%d", MaxLimit)}
	case r.WindowSeconds < 1 || r.WindowSeconds > MaxWindowSeconds:
		return &FieldError{"window_seconds", fmt.Sprintf("must be 1..%d", MaxWindowSeconds)}
	case r.Algorithm != Fixed && r.Algorithm != GCRA:
		return &FieldError{"algorithm", fmt.Sprintf("must be %q or %q", Fixed, GCRA)}
	}
	return nil
}

// Config configures a Store. The zero value of each field takes its default.
type Config struct {
	// Layout builds key names. Default: the single layout, no prefix.
	Layout keyspace.Layout
	// RecentSize is the size of every ring. Default 500.
	RecentSize int
	// BacklogCap is the most entries a flush stream may hold; an enqueue beyond it is
	// rejected, nothing is trimmed to make room. Default 1 000 000.
	BacklogCap int64
	// ClientMsgTTL is how long a client_msg_id is remembered. Default 24h.
	ClientMsgTTL time.Duration
	// DefaultRate applies while the shared settings hash has no value. Default 30 per 10 s, fixed.
	DefaultRate RateLimit
	// Timeout bounds every Valkey call. Default 1s.
	Timeout time.Duration
	// MirrorChunk is the most legacy entries one mirror step moves. Default 1000.
	MirrorChunk int
	// Durability is what an accepted message waits for. Default DurableNone.
	Durability Durability
	// DurableReplicas is how many replicas must acknowledge under DurableReplica. Default 1.
	DurableReplicas int
	// DurableTimeout bounds the wait for durability. Default 200ms.
	DurableTimeout time.Duration
	// IDs selects how cache ids are made. Default CounterIDs.
	IDs IDs
	// RingTTL is how long a ring lives after its last push (RING_IDLE_TTL). Default 0: forever.
	RingTTL time.Duration
	// MaxReactions is the most distinct emoji one message may have (REACTIONS_MAX_DISTINCT).
	// Default 20, at most MaxReactionsLimit.
	MaxReactions int
}

// MaxReactionsLimit bounds MaxReactions: a message's counts travel whole on every reaction.
const MaxReactionsLimit = 50

func (c *Config) setDefaults() error {
	if c.Layout == nil {
		c.Layout, _ = keyspace.New("")
	}
	if c.RecentSize == 0 {
		c.RecentSize = 500
	}
	if c.BacklogCap == 0 {
		c.BacklogCap = 1_000_000
	}
	if c.ClientMsgTTL == 0 {
		c.ClientMsgTTL = 24 * time.Hour
	}
	if c.DefaultRate == (RateLimit{}) {
		c.DefaultRate = RateLimit{Limit: 30, WindowSeconds: 10, Algorithm: Fixed}
	}
	if c.Timeout == 0 {
		c.Timeout = time.Second
	}
	if c.MirrorChunk == 0 {
		c.MirrorChunk = 1000
	}
	if c.Durability == "" {
		c.Durability = DurableNone
	}
	if c.DurableReplicas == 0 {
		c.DurableReplicas = 1
	}
	if c.DurableTimeout == 0 {
		c.DurableTimeout = 200 * time.Millisecond
	}
	if c.IDs == "" {
		c.IDs = CounterIDs
	}
	if c.MaxReactions == 0 {
		c.MaxReactions = 20
	}
	switch {
	case c.RecentSize < 1:
		return errors.New("recent size must be at least 1")
	case c.BacklogCap < 1:
		return errors.New("backlog cap must be at least 1")
	case c.ClientMsgTTL < time.Second:
		return errors.New("client_msg_id TTL must be at least 1s")
	case c.Timeout < 0:
		return errors.New("timeout must be positive")
	case c.MirrorChunk < 1:
		return errors.New("mirror chunk must be at least 1")
	case c.Durability != DurableNone && c.Durability != DurableReplica && c.Durability != DurableFsync:
		return fmt.Errorf("durability %q is not none, replica or fsync", c.Durability)
	case c.DurableReplicas < 1:
		return errors.New("durable replicas must be at least 1")
	case c.DurableTimeout < time.Millisecond:
		return errors.New("durability timeout must be at least 1ms")
	case c.MaxReactions < 1 || c.MaxReactions > MaxReactionsLimit:
		return fmt.Errorf("reactions max distinct must be 1 to %d", MaxReactionsLimit)
	case c.IDs != CounterIDs && c.IDs != ClockIDs:
		return fmt.Errorf("ids %q are not counter or clock", c.IDs)
	}
	if err := c.DefaultRate.Validate(); err != nil {
		return fmt.Errorf("default rate limit: %w", err)
	}
	return nil
}
