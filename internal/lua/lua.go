// Package lua holds chatpipe's Valkey operations: the Lua scripts that accept, delete and
// mirror messages atomically, and the few plain reads and writes around them (recent
// messages, rate-limit settings).
//
// Each script is an embedded .lua file with its contract at the top, called by SHA with a
// reload on NOSCRIPT. Keys reach scripts only through KEYS, built by package keyspace.
// Replies are turned into results and the errors of package store here; callers never see raw
// replies. (The stores move to package store next: docs/store.md.)
package lua

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/message"
	"github.com/chatpipe/chatpipe/internal/store"
	"github.com/chatpipe/chatpipe/internal/valkeyconn"
)

var (
	//go:embed common.lua
	commonSrc string
	//go:embed entry.lua
	entrySrc string
	//go:embed batch.lua
	batchSrc string
	//go:embed enqueue.lua
	enqueueSrc string
	//go:embed one.lua
	oneSrc string
	//go:embed delete.lua
	deleteSrc string
	//go:embed ring.lua
	ringSrc string
	//go:embed unring.lua
	unringSrc string
	//go:embed mirror.lua
	mirrorSrc string
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

// Config configures Scripts. The zero value of each field takes its default.
type Config struct {
	// Layout builds key names. Scripts (New) run on its single layout (Layout.Single), under
	// the same prefix; Open picks the store of the layout. Default: the single layout, no prefix.
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
}

func (c *Config) setDefaults() error {
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
	case c.IDs != CounterIDs && c.IDs != ClockIDs:
		return fmt.Errorf("ids %q are not counter or clock", c.IDs)
	}
	if err := c.DefaultRate.Validate(); err != nil {
		return fmt.Errorf("default rate limit: %w", err)
	}
	return nil
}

// Store is what ingest and the flush workers run on Valkey, in either layout.
type Store interface {
	Enqueue(ctx context.Context, m Message) (Result, error)
	EnqueueMany(ctx context.Context, kind message.Kind, msgs []Message) []Outcome
	Recent(ctx context.Context, tl message.Timeline, limit int) ([]string, error)
	DeletePublic(ctx context.Context, channel string, id int64) error
	DeletePrivate(ctx context.Context, id int64, owner, recipient string) error
	Edit(ctx context.Context, e Edit) (int64, error)
	RateLimit(ctx context.Context) (RateLimit, error)
	SetRateLimit(ctx context.Context, rl RateLimit) error
	Ping(ctx context.Context) error
	Probe(ctx context.Context) error
	// Load loads the scripts ahead of their first use (a NOSCRIPT would load them anyway).
	Load(ctx context.Context) error
	// ForgetPrivate and RepairRings keep the private rings: the workers call them for what they
	// wrote and deleted.
	ForgetPrivate(ctx context.Context, recs []message.Record) error
	RepairRings(ctx context.Context, recs []message.Record, entries []string) error
}

// Open returns the store of cfg.Layout (default: the single layout).
func Open(c valkey.Client, cfg Config) (Store, error) {
	if cfg.Layout != nil {
		if keys, ok := cfg.Layout.Partitioned(); ok {
			return NewPartitioned(c, keys, cfg)
		}
	}
	return New(c, cfg)
}

// Scripts runs chatpipe's operations on one Valkey.
type Scripts struct {
	c       valkey.Client
	cfg     Config
	keys    keyspace.Keys
	enqueue *Script
	one     *Script
	delete  *Script
	edit    *Script
	unring  *Script
	mirror  *Script
	// staticArgs are ARGV[1..10] of enqueue.lua, which do not change per batch.
	staticArgs [kindCount][]string
}

const kindCount = len(message.Kinds)

// New returns Scripts that run on c.
func New(c valkey.Client, cfg Config) (*Scripts, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Scripts{
		c:       c,
		cfg:     cfg,
		keys:    keyspace.Keys{},
		enqueue: NewScript("enqueue", commonSrc, entrySrc, batchSrc, enqueueSrc),
		one:     NewScript("one", oneSrc),
		delete:  NewScript("delete", entrySrc, ringSrc, deleteSrc),
		edit:    NewScript("edit", commonSrc, entrySrc, ringSrc, editSrc),
		unring:  NewScript("unring", ringSrc, unringSrc),
		mirror:  NewScript("mirror", entrySrc, mirrorSrc),
	}
	if cfg.Layout != nil {
		s.keys = cfg.Layout.Single()
	}
	for _, k := range message.Kinds {
		s.staticArgs[k] = []string{
			strconv.Itoa(cfg.RecentSize),
			strconv.FormatInt(cfg.BacklogCap, 10),
			strconv.FormatInt(int64(cfg.ClientMsgTTL/time.Second), 10),
			strconv.Itoa(cfg.DefaultRate.Limit),
			strconv.Itoa(cfg.DefaultRate.WindowSeconds),
			string(cfg.DefaultRate.Algorithm),
			k.String(),
			flag(cfg.Durability != DurableNone),
			flag(cfg.IDs == ClockIDs),
			strconv.FormatInt(cfg.RingTTL.Milliseconds(), 10),
		}
	}
	return s, nil
}

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Keys returns the key builder in use.
func (s *Scripts) Keys() keyspace.Keys { return s.keys }

// Load loads every script, so that the first requests need no reload. Optional.
func (s *Scripts) Load(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	for _, sc := range []*Script{s.enqueue, s.one, s.delete, s.edit, s.unring, s.mirror} {
		if err := sc.load(ctx, s.c); err != nil {
			return classify(err)
		}
	}
	return nil
}

// RepairRings does nothing: the single layout writes its rings inside the enqueue, atomically.
func (s *Scripts) RepairRings(context.Context, []message.Record, []string) error { return nil }

// Ping checks that Valkey answers within the timeout.
func (s *Scripts) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	return classify(s.c.Do(ctx, s.c.B().Ping().Build()).Error())
}

// Probe tells readiness, after Valkey answered OOM, whether it takes writes again: it returns
// store.ErrFull while used memory is above 95% of maxmemory (hysteresis: right at the limit a tiny
// write passes while the next message fails) or a short-lived probe key is refused.
func (s *Scripts) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	info, err := valkeyconn.ReadInfo(ctx, s.c)
	if err != nil {
		return classify(err)
	}
	if info.MaxMemory > 0 && float64(info.UsedMemory) > 0.95*float64(info.MaxMemory) {
		return fmt.Errorf("%w: %d of %d bytes used", store.ErrFull, info.UsedMemory, info.MaxMemory)
	}
	return classify(s.c.Do(ctx, s.c.B().Set().Key(s.keys.Probe()).Value("1").PxMilliseconds(1000).Build()).Error())
}

// classify sorts errors into the classes a caller acts on: store.ErrFull for OOM; store.ErrUnavailable for
// what passes with time — no reply at all (connection refused, reset, timeout) and the
// replies of a server that cannot take writes for now (valkeyconn.IsTransient); anything else
// is returned as it is.
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case valkeyconn.IsOOM(err):
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	case valkeyconn.IsTransient(err):
	default:
		if _, ok := valkey.IsValkeyErr(err); ok {
			return err
		}
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
