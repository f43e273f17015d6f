// Package backoff is the retry delay of chatpipe's loops that wait out a failing server (the
// flush workers, the live tail's readers): capped exponential with jitter, so that replicas that
// failed together do not come back together.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Delay is the delay before retry number attempt (1, 2, …): about 100 ms, 200 ms, … up to 5 s,
// each between half and the whole of it.
func Delay(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(max(attempt, 1)-1, 6)
	d = min(d, 5*time.Second)
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps Delay(attempt), or until ctx ends.
func Wait(ctx context.Context, attempt int) {
	t := time.NewTimer(Delay(attempt))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
