package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestEventSourceInBrowser follows the live tail with the browser's own EventSource, as a chat
// page would, in headless Chromium on a page of ingest's origin. It must get every message
// exactly once across an ingest restart on the same port (the browser reconnects by itself
// with Last-Event-ID), and, with the subscriber cap (INGEST_TAIL_MAX=1) held by another
// client, keep retrying by itself and get in, from its cursor, once the slot frees.
func TestEventSourceInBrowser(t *testing.T) {
	testenv.Slow(t, "builds the binary and starts Chromium")
	t.Parallel()
	bin := filepath.Join(testenv.Build(t, "", "."), "ingest")
	v := testenv.StartValkey(t)
	addr := testenv.FreeAddr(t)
	base := "http://" + addr
	logs := &testenv.SyncBuffer{}
	start := func() *exec.Cmd {
		return startBinary(t, bin, addr, logs, "VALKEY_ADDR="+v.Addr, "INGEST_TAIL_MAX=1", "INGEST_MIRROR_INTERVAL=0", "RATE_LIMIT=1000")
	}
	ing := start()
	next := 0
	send := func(n int) {
		t.Helper()
		for range n {
			next++
			body := fmt.Sprintf(`{"owner_id":"u%d","username":"U","content":"message %d"}`, next%7, next)
			res, err := http.Post(base+"/v1/messages", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != http.StatusAccepted {
				t.Fatalf("POST: %d", res.StatusCode)
			}
		}
	}

	ctx := testenv.Browser(t)
	eval := func(js string) any {
		t.Helper()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[any](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return out
	}
	// The page records every message's cache id, the last event id, and refusals (an
	// `event: error` with data; a lost connection is an error event without data).
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/healthz")); err != nil {
		t.Fatal(err)
	}
	eval(`(() => {
	  window.got = []; window.refusals = []; window.lastId = "";
	  window.follow = (url) => {
	    const es = new EventSource(url);
	    es.addEventListener("message", e => { got.push(JSON.parse(e.data).cache_id); lastId = e.lastEventId; });
	    es.addEventListener("error", e => { if (e.data) refusals.push(JSON.parse(e.data).error); });
	    window.es = es;
	  };
	  follow("/v1/messages/stream");
	  return true;
	})()`)
	got := func() []int64 {
		var ids []int64
		for _, x := range eval(`got`).([]any) {
			ids = append(ids, int64(x.(float64)))
		}
		return ids
	}
	waitGot := func(n int) {
		t.Helper()
		testenv.WaitFor(t, fmt.Sprintf("the page to hold %d messages", n), 30*time.Second, func() bool { return len(got()) >= n })
		time.Sleep(300 * time.Millisecond) // anything more would be a duplicate
		ids := got()
		want := make([]int64, n)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if !slices.Equal(ids, want) {
			t.Fatalf("the page's EventSource got %v, want 1..%d once each", ids, n)
		}
	}
	testenv.WaitFor(t, "the EventSource to open", 20*time.Second, func() bool { return eval(`es.readyState`).(float64) == 1 })
	send(5)
	waitGot(5)

	// Ingest stops and starts again on the same port; messages sent before the page is back.
	if err := ing.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := ing.Wait(); err != nil {
		t.Fatalf("ingest exit: %v\n%s", err, logs.String())
	}
	start()
	send(5)
	waitGot(10)

	// The cap: another client holds the one slot; the page's new EventSource, resuming from
	// its last id, is refused, retries by itself, and gets in once the slot frees.
	eval(`es.close(); true`)
	var holder *testenv.SSE
	testenv.WaitFor(t, "the page's stream to leave its slot", 20*time.Second, func() bool {
		s, code := testenv.OpenSSE(t, http.DefaultClient, base+"/v1/messages/stream", "")
		holder = s
		return code == http.StatusOK
	})
	eval(`follow("/v1/messages/stream?after=" + encodeURIComponent(lastId)); true`)
	testenv.WaitFor(t, "the page to be refused", 20*time.Second, func() bool { return len(eval(`refusals`).([]any)) > 0 })
	send(5)
	time.Sleep(500 * time.Millisecond)
	if n := len(got()); n != 10 {
		t.Fatalf("the page got %d messages while refused, want 10", n)
	}
	holder.Close()
	waitGot(15)
	if r := eval(`refusals`).([]any); len(r) == 0 || r[0] != "unavailable" {
		t.Errorf("refusals seen by the page: %v, want unavailable", r)
	}
	if eval(`es.readyState`).(float64) != 1 {
		t.Error("the page's EventSource is not open after the slot freed")
	}
}
