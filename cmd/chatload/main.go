// Command chatload sends a bounded, realistic load of chat messages to a local ingest, with a
// progress line every second and a summary by outcome at the end. `make load` runs it.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/chatpipe/chatpipe/internal/config"
	"github.com/chatpipe/chatpipe/internal/loadgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	if code := config.ExitCode(err); code != 0 {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(code)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var cfg loadgen.Config
	var idsOut string
	var ratio struct{ private, invalid, hot int }
	var seed int
	cs := config.New("chatload", "Sends a bounded load of public and private chat messages to a local ingest\n(loopback only): many users, a few over their rate limit, a few invalid.")
	cs.String(&cfg.URL, "CHATLOAD_URL", "http://127.0.0.1:8080", "ingest's base URL (loopback only)", nil)
	cs.Secret(&cfg.Token, "INGEST_AUTH_TOKEN", "", "bearer token, when ingest wants one", nil)
	cs.FlagInt(&cfg.Messages, "messages", 10_000, 1, 100_000_000, "messages to send in all")
	cs.FlagInt(&cfg.Concurrency, "concurrency", 16, 1, 1024, "concurrent clients")
	cs.FlagInt(&cfg.Users, "users", 1000, 1, 10_000_000, "distinct senders")
	cs.FlagInt(&cfg.Channels, "channels", 100, 1, 1_000_000, "channels the public messages go to, skewed (channel k gets about 1/(k+1)); 1: the default channel only")
	cs.FlagInt(&ratio.private, "private-percent", 30, 0, 100, "share of private messages, in percent")
	cs.FlagInt(&ratio.invalid, "invalid-percent", 1, 0, 100, "share of invalid messages (empty content), in percent")
	cs.FlagInt(&ratio.hot, "hot-percent", 5, 0, 100, "share of messages from 5 hot users who go over the rate limit, in percent")
	cs.FlagInt(&cfg.Batch, "batch", 0, 0, 1000, "send public messages through the batch endpoint, this many per request (0: one per request)")
	cs.FlagInt(&seed, "seed", 1, 1, 1<<31, "random seed; the same seed sends the same messages")
	cs.FlagString(&idsOut, "ids-out", "", "file to write every accepted id to, one 'kind cache_id' per line", nil)
	maxDur := 10 * time.Minute
	cs.Duration(&maxDur, "CHATLOAD_MAX_DURATION", maxDur, time.Second, 24*time.Hour, "stop after this long whatever is left")
	if err := cs.Parse(args, getenv, stdout); err != nil {
		return err
	}
	cfg.PrivateRatio = float64(ratio.private) / 100
	cfg.InvalidRatio = float64(ratio.invalid) / 100
	cfg.HotRatio = float64(ratio.hot) / 100
	cfg.Seed = uint64(seed)
	cfg.MaxDuration = maxDur
	cfg.Progress = func(s loadgen.Stats) {
		fmt.Fprintf(stderr, "chatload: %d/%d sent, %d accepted, %d rate limited, %d invalid, %d unavailable, %.0f msg/s\n",
			s.Sent, cfg.Messages, s.Accepted, s.RateLimited, s.Invalid, s.Unavailable+s.BacklogFull, float64(s.Sent)/s.Elapsed.Seconds())
	}
	if idsOut != "" {
		f, err := os.Create(idsOut)
		if err != nil {
			return err
		}
		defer f.Close()
		w := bufio.NewWriter(f)
		defer w.Flush()
		var mu sync.Mutex
		cfg.OnAccepted = func(kind string, id int64) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(w, "%s %d\n", kind, id)
		}
	}
	s, err := loadgen.Run(ctx, cfg)
	fmt.Fprintf(stdout, "sent %d in %s (%.0f msg/s)\n  accepted      %d\n  duplicate     %d\n  rate_limited  %d\n  invalid       %d\n  backlog_full  %d\n  unavailable   %d\n  other errors  %d\n",
		s.Sent, s.Elapsed.Round(time.Millisecond), float64(s.Sent)/s.Elapsed.Seconds(),
		s.Accepted, s.Duplicate, s.RateLimited, s.Invalid, s.BacklogFull, s.Unavailable, s.OtherErrors)
	return err
}
