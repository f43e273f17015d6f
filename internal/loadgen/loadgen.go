// Package loadgen sends a bounded, realistic stream of chat messages to ingest: many users,
// public and private messages, some users over their rate limit, a few invalid messages. It
// counts every answer by outcome, so that the counts can be compared with ingest's metrics and
// with the rows in PostgreSQL.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	chatpipe "github.com/chatpipe/chatpipe/client"
)

// Config bounds and shapes a load run.
type Config struct {
	// URL is ingest's base URL. Only loopback hosts are allowed.
	URL string
	// Token is the bearer token, if ingest wants one.
	Token string
	// Messages is how many messages to send in all. Default 10 000.
	Messages int
	// Concurrency is the number of concurrent clients. Default 16.
	Concurrency int
	// Users is how many distinct senders. Default 1000.
	Users int
	// PrivateRatio is the share of private messages. Default 0.3.
	PrivateRatio float64
	// InvalidRatio is the share of invalid messages (empty content). Default 0.01.
	InvalidRatio float64
	// HotUsers send a burst each: the share of messages from 5 users, who go over the rate
	// limit. Default 0.05.
	HotRatio float64
	// Batch, when above 0, sends public messages through the batch endpoint in batches this big.
	Batch int
	// Channels spreads the public messages over this many channels, skewed as chat rooms are (a
	// few busy, many quiet: channel k gets a share about 1/(k+1)); the busiest is the default
	// channel. 1: the default channel only. Default 100.
	Channels int
	// MaxDuration stops the run early. Default 10m.
	MaxDuration time.Duration
	// Seed makes the run repeatable. Default 1.
	Seed uint64
	// Progress, when set, is called about once a second.
	Progress func(Stats)
	// OnAccepted, when set, is called for every new cache id (kind "message" or "private_message").
	OnAccepted func(kind string, cacheID int64)
}

// Stats counts outcomes.
type Stats struct {
	Sent        int64
	Accepted    int64
	Duplicate   int64
	RateLimited int64
	Invalid     int64
	BacklogFull int64
	Unavailable int64
	OtherErrors int64
	Elapsed     time.Duration
}

type counters struct {
	sent, accepted, duplicate, rateLimited, invalid, backlogFull, unavailable, other atomic.Int64
	start                                                                            time.Time
}

func (c *counters) snapshot() Stats {
	return Stats{
		Sent: c.sent.Load(), Accepted: c.accepted.Load(), Duplicate: c.duplicate.Load(),
		RateLimited: c.rateLimited.Load(), Invalid: c.invalid.Load(), BacklogFull: c.backlogFull.Load(),
		Unavailable: c.unavailable.Load(), OtherErrors: c.other.Load(), Elapsed: time.Since(c.start),
	}
}

func (c *Config) setDefaults() error {
	if c.Messages == 0 {
		c.Messages = 10_000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	if c.Users == 0 {
		c.Users = 1000
	}
	if c.Channels == 0 {
		c.Channels = 100
	}
	if c.MaxDuration == 0 {
		c.MaxDuration = 10 * time.Minute
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("url %q: not an http(s) URL", c.URL)
	}
	ips, err := net.LookupIP(u.Hostname())
	if err != nil {
		return fmt.Errorf("url %q: %w", c.URL, err)
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return fmt.Errorf("url %q: load is only sent to loopback addresses", c.URL)
		}
	}
	return nil
}

// Run sends the load and returns the final counts.
func Run(ctx context.Context, cfg Config) (Stats, error) {
	if err := cfg.setDefaults(); err != nil {
		return Stats{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	// The Go client, without retries: the load counts what ingest answers, refusals included.
	client, err := chatpipe.New(cfg.URL, chatpipe.WithToken(cfg.Token), chatpipe.WithRetry(chatpipe.RetryPolicy{Attempts: 1}),
		chatpipe.WithHTTPClient(&http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Concurrency, MaxConnsPerHost: cfg.Concurrency},
		}))
	if err != nil {
		return Stats{}, err
	}
	c := &counters{start: time.Now()}
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	if cfg.Progress != nil {
		progressDone.Go(func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					cfg.Progress(c.snapshot())
				}
			}
		})
	}
	for w := range cfg.Concurrency {
		g.Go(func() error {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			s := sender{cfg: &cfg, client: client, c: c, rng: rng}
			for gctx.Err() == nil {
				step := 1
				if cfg.Batch > 0 {
					step = cfg.Batch
				}
				first := next.Add(int64(step)) - int64(step)
				if first >= int64(cfg.Messages) {
					return nil
				}
				n := min(int64(step), int64(cfg.Messages)-first)
				if err := s.send(gctx, int(n)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	err = g.Wait()
	close(stopProgress)
	progressDone.Wait()
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = nil // the duration bound is a normal end
	}
	return c.snapshot(), err
}

type sender struct {
	cfg    *Config
	client *chatpipe.Client
	c      *counters
	rng    *rand.Rand
}

var words = []string{"hello", "there", "anyone", "up", "for", "a", "game", "tonight", "lol", "gg", "nice", "see", "you", "later", "ok", "👍", "café", "<b>not html</b>", "'; DROP TABLE chat_messages; --", "redis.call('FLUSHALL')"}

func (s *sender) message() chatpipe.Draft {
	var owner string
	if s.rng.Float64() < s.cfg.HotRatio {
		owner = fmt.Sprintf("hot%d", s.rng.IntN(5))
	} else {
		owner = fmt.Sprintf("user%d", s.rng.IntN(s.cfg.Users))
	}
	var b strings.Builder
	for i := range 3 + s.rng.IntN(12) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[s.rng.IntN(len(words))])
	}
	m := chatpipe.Draft{OwnerID: owner, Username: "U " + owner, Content: b.String()}
	if s.rng.Float64() < s.cfg.InvalidRatio {
		m.Content = ""
	}
	return m
}

// channel picks a public message's channel: "" (the default one) or room-k, with a share about
// 1/(k+1) for channel k (the harmonic weights' cumulative sum inverted: k ≈ (n+1)^u - 1).
func (s *sender) channel() string {
	k := int(math.Pow(float64(s.cfg.Channels+1), s.rng.Float64())) - 1
	if k <= 0 || s.cfg.Channels <= 1 {
		return ""
	}
	return fmt.Sprintf("room-%d", min(k, s.cfg.Channels-1))
}

// send sends n messages: one request each, or one batch request when Batch is set.
func (s *sender) send(ctx context.Context, n int) error {
	if s.cfg.Batch > 0 {
		msgs := make([]chatpipe.Draft, n)
		for i := range msgs {
			msgs[i] = s.message()
			msgs[i].Channel = s.channel()
		}
		res, err := s.client.SendBatch(ctx, msgs)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.c.sent.Add(int64(n))
		if err != nil {
			for range n {
				s.count("message", chatpipe.Accepted{}, err)
			}
			return nil
		}
		for _, r := range res {
			s.count("message", r.Accepted, r.Err)
		}
		return nil
	}
	m := s.message()
	var a chatpipe.Accepted
	var err error
	kind := "message"
	if s.rng.Float64() < s.cfg.PrivateRatio {
		m.RecipientID, kind = fmt.Sprintf("user%d", s.rng.IntN(s.cfg.Users)), "private_message"
		a, err = s.client.SendPrivate(ctx, m)
	} else {
		m.Channel = s.channel()
		a, err = s.client.Send(ctx, m)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.c.sent.Add(1)
	s.count(kind, a, err)
	return nil
}

// count counts one message's outcome. A lost connection counts as unavailable: ingest may be
// restarting under load.
func (s *sender) count(kind string, a chatpipe.Accepted, err error) {
	var e *chatpipe.Error
	code := "unavailable"
	if errors.As(err, &e) {
		code = e.Code
	}
	switch {
	case err == nil && a.Duplicate:
		s.c.duplicate.Add(1)
	case err == nil:
		s.c.accepted.Add(1)
		if s.cfg.OnAccepted != nil {
			s.cfg.OnAccepted(kind, a.CacheID)
		}
	case code == "rate_limited":
		s.c.rateLimited.Add(1)
	case code == "invalid" || code == "invalid_json" || code == "unknown_field":
		s.c.invalid.Add(1)
	case code == "backlog_full":
		s.c.backlogFull.Add(1)
	case code == "unavailable":
		s.c.unavailable.Add(1)
	default:
		s.c.other.Add(1)
	}
}
