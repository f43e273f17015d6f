package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/streams"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// bundle is a pipeline with dead letters: Valkey, PostgreSQL, a flushworker replica and the
// console binary, the way an operator runs them.
type bundle struct {
	v       *testenv.Valkey
	c       valkey.Client
	dsn     string
	bin     string
	console string // base URL
}

const createdAt = "2026-12-01T10:00:00Z"

func entry(t *testing.T, c valkey.Client, id int, payload string) {
	testenv.Do(t, c, "XADD", "chatpipe:flush:message", "*", "cache_id", strconv.Itoa(id), "kind", "message", "payload", payload)
}

func good(id int, content string) string {
	return fmt.Sprintf(`{"cache_id":%d,"data":{"owner_id":"op","username":"Op","content":%q,"created_at":%q}}`, id, content, createdAt)
}

// start runs a binary of dir with env until the test ends.
func start(t *testing.T, bin string, args []string, env ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() })
}

func (b *bundle) startConsole(t *testing.T, env ...string) string {
	addr := testenv.FreeAddr(t)
	start(t, filepath.Join(b.bin, "flushworker"), []string{"console"}, append([]string{"VALKEY_ADDR=" + b.v.Addr, "CONSOLE_ADDR=" + addr,
		"LOG_LEVEL=warn", "GRAFANA_URL=http://127.0.0.1:3000"}, env...)...)
	testenv.WaitReady(t, "http://"+addr+"/healthz", 20*time.Second)
	return "http://" + addr
}

// setup dead-letters three undecodable entries and three that PostgreSQL refuses (a CHECK
// added for the test: the cause an operator fixes before replaying), beside one good row.
func setup(t *testing.T) *bundle {
	t.Helper()
	b := &bundle{v: testenv.StartValkey(t), dsn: testenv.Postgres(t), bin: testenv.Build(t, "", "../../cmd/flushworker")}
	b.c = b.v.Client(t)
	testenv.Migrate(t, filepath.Join(b.bin, "flushworker"), b.dsn)
	b.exec(t, "ALTER TABLE chat_messages ADD CONSTRAINT console_test_forbidden CHECK (content <> 'forbidden')")
	entry(t, b.c, 9000, good(9000, "fine"))
	for i := range 3 {
		entry(t, b.c, 9001+i, `not json <script>alert(1)</script>`)
		entry(t, b.c, 9101+i, good(9101+i, "forbidden"))
	}
	start(t, filepath.Join(b.bin, "flushworker"), nil, "VALKEY_ADDR="+b.v.Addr, "DATABASE_URL="+b.dsn, "FLUSH_CONSUMER=w1",
		"FLUSH_METRICS_ADDR=127.0.0.1:0", "FLUSH_MIGRATE=false", "FLUSH_TAIL_RETENTION=0", "LOG_LEVEL=error")
	testenv.WaitFor(t, "six dead letters", 30*time.Second, func() bool {
		n, _ := testenv.Do(t, b.c, "XLEN", "chatpipe:dead:message").AsInt64()
		return n == 6
	})
	testenv.WaitFor(t, "the stream drained", 10*time.Second, func() bool {
		st, err := streams.ReadQueue(context.Background(), b.c, flushStream(), "flushworkers")
		return err == nil && st.Length == 0 && st.Pending == 0 && st.Lag == 0
	})
	b.console = b.startConsole(t)
	return b
}

func flushStream() keyspace.FlushStream {
	k, _ := keyspace.New("")
	return k.FlushStreams()[0]
}

func (b *bundle) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

func (b *bundle) rows(t *testing.T, ids ...int64) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM chat_messages WHERE cache_id = ANY($1)", ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// browser is a headless Chromium driven by chromedp.
func browser(t *testing.T) context.Context { return testenv.Browser(t) }

func run(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatal(err)
	}
}

// texts is the text of every element selector matches, in the rendered DOM.
func texts(t *testing.T, ctx context.Context, selector string) []string {
	t.Helper()
	out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).map(e => e.textContent.trim())`, selector)))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// shot saves a screenshot of the page under CONSOLE_SHOTS (make console-shots).
func shot(t *testing.T, ctx context.Context, name string) {
	dir := os.Getenv("CONSOLE_SHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", filepath.Join(dir, name))
}

// TestConsoleInBrowser, in headless Chromium: the overview shows the numbers Valkey holds; the
// dead-letter page lists every dead letter with its original id and reason (the hostile
// payload escaped); replay through the page, once the cause is fixed, makes them rows;
// purge (all, after a confirmation) removes them; a form posted from another origin is refused.
func TestConsoleInBrowser(t *testing.T) {
	b := setup(t)
	ctx := browser(t)

	run(t, ctx, chromedp.Navigate(b.console+"/"), chromedp.WaitVisible(css(`#streams`)))
	st, err := streams.ReadQueue(context.Background(), b.c, flushStream(), "flushworkers")
	if err != nil {
		t.Fatal(err)
	}
	cell := func(field string) string {
		v := texts(t, ctx, fmt.Sprintf(`tr[data-stream="message"] td[data-field=%q]`, field))
		if len(v) != 1 {
			t.Fatalf("overview: %d cells %s for the message stream", len(v), field)
		}
		return v[0]
	}
	for field, want := range map[string]int64{"length": st.Length, "lag": st.Lag, "pending": st.Pending, "consumers": st.Consumers, "dead": st.DeadLetters} {
		if got := cell(field); got != strconv.FormatInt(want, 10) {
			t.Errorf("overview %s = %q, Valkey holds %d", field, got, want)
		}
	}
	if st.DeadLetters != 6 || st.Consumers != 1 {
		t.Errorf("Valkey holds %d dead letters and %d consumers, want 6 and 1", st.DeadLetters, st.Consumers)
	}
	if c := texts(t, ctx, `tr[data-stream="message"][data-consumer="w1"]`); len(c) != 1 {
		t.Errorf("consumer w1 listed %d times", len(c))
	}
	if h := texts(t, ctx, "#health"); len(h) != 1 || h[0] != "Needs attention" {
		t.Errorf("health = %v, want Needs attention (dead letters)", h)
	}
	shot(t, ctx, "console-overview.png")

	run(t, ctx, chromedp.Navigate(b.console+"/dead-letters?stream=message"), chromedp.WaitVisible(css(`#letters`)))
	xs, err := b.c.Do(context.Background(), b.c.B().Xrange().Key("chatpipe:dead:message").Start("-").End("+").Build()).AsXRange()
	if err != nil {
		t.Fatal(err)
	}
	var wantIDs, wantReasons []string
	for _, x := range xs {
		wantIDs, wantReasons = append(wantIDs, x.FieldValues["original_id"]), append(wantReasons, x.FieldValues["reason"])
	}
	if got := texts(t, ctx, ".original-id"); !slices.Equal(got, wantIDs) {
		t.Errorf("original ids on the page %v, in Valkey %v", got, wantIDs)
	}
	if got := texts(t, ctx, ".reason"); !slices.Equal(got, wantReasons) {
		t.Errorf("reasons on the page %v, in Valkey %v", got, wantReasons)
	}
	if n := len(texts(t, ctx, "script")); n != 0 {
		t.Errorf("the page runs %d scripts: a payload was not escaped", n)
	}
	shot(t, ctx, "console-dead-letters.png")
	run(t, ctx, chromedp.Click(css(`a[href^="/dead-letters/entry"]`)), chromedp.WaitVisible(css(`#fields`)))
	if f := strings.Join(texts(t, ctx, "#fields td"), " "); !strings.Contains(f, "original_id") || !strings.Contains(f, "<script>") {
		t.Errorf("the entry page shows %q; want its fields, the payload as text", f)
	}
	shot(t, ctx, "console-entry.png")

	// Another origin's page posts to the console: refused, nothing changes.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<form method="post" action="%s/dead-letters/action"><input name="stream" value="message"><input name="op" value="purge-all">
<input name="upto" value="99999999999999-0"><input name="confirm" value="yes"><button id="go">go</button></form>`, b.console)
	}))
	defer evil.Close()
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) // another site, not only another port
	run(t, ctx, chromedp.Navigate(evilURL))
	run(t, ctx, chromedp.Click(css("#go")), chromedp.Sleep(time.Second))
	body, err := chromedp.Run(ctx, chromedp.Text(css("body")))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := testenv.Do(t, b.c, "XLEN", "chatpipe:dead:message").AsInt64(); n != 6 {
		t.Fatalf("a cross-origin form purged: %d dead letters left (page: %q)", n, body)
	}
	if !strings.Contains(strings.ToLower(body), "cross-origin") {
		t.Errorf("the cross-origin post answered %q", body)
	}

	// Fix the cause, then replay the refused ones from the page: they become rows.
	b.exec(t, "ALTER TABLE chat_messages DROP CONSTRAINT console_test_forbidden")
	run(t, ctx, chromedp.Navigate(b.console+"/dead-letters?stream=message&reason=rejected"), chromedp.WaitVisible(css(`#letters`)))
	if ids := texts(t, ctx, ".original-id"); len(ids) != 3 {
		t.Fatalf("reason=rejected lists %v, want 3", ids)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { document.querySelectorAll('input[name=id]').forEach(e => e.click()); return true })()`)); err != nil {
		t.Fatal(err)
	}
	run(t, ctx, chromedp.Click(css("#replay")), chromedp.WaitVisible(css("#flash")))
	if f := texts(t, ctx, "#flash"); len(f) != 1 || f[0] != "replayed 3 dead letters" {
		t.Errorf("after replay: %v", f)
	}
	testenv.WaitFor(t, "the replayed dead letters as rows", 20*time.Second, func() bool { return b.rows(t, 9101, 9102, 9103) == 3 })

	// Purge the rest: all up to the newest shown, after the confirmation page.
	run(t, ctx, chromedp.Navigate(b.console+"/dead-letters?stream=message&reason=decode"), chromedp.WaitVisible(css(`#letters`)),
		chromedp.Click(css("#purge-all")), chromedp.WaitVisible(css("#question")))
	if n, _ := testenv.Do(t, b.c, "XLEN", "chatpipe:dead:message").AsInt64(); n != 3 {
		t.Fatalf("purge-all before its confirmation changed something: %d dead letters", n)
	}
	shot(t, ctx, "console-confirm.png")
	run(t, ctx, chromedp.Click(css("#confirm")), chromedp.WaitVisible(css("#flash")))
	if f := texts(t, ctx, "#flash"); len(f) != 1 || f[0] != "purged 3 dead letters" {
		t.Errorf("after purge: %v", f)
	}
	if n, _ := testenv.Do(t, b.c, "XLEN", "chatpipe:dead:message").AsInt64(); n != 0 {
		t.Errorf("%d dead letters left after the purge", n)
	}
	if n := b.rows(t, 9001, 9002, 9003); n != 0 {
		t.Errorf("purged entries became %d rows", n)
	}
}

func post(t *testing.T, base string, form url.Values, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/dead-letters/action", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(body)
}

// TestConsoleRefuses: a read-only console refuses every POST and shows no buttons; a
// cross-origin POST gets 403; Basic auth when configured; malformed, hostile, oversized and empty
// input gets 400 naming the problem, and changes nothing.
func TestConsoleRefuses(t *testing.T) {
	b := setup(t)
	id := func() string {
		xs, _ := b.c.Do(context.Background(), b.c.B().Xrange().Key("chatpipe:dead:message").Start("-").End("+").Count(1).Build()).AsXRange()
		return xs[0].ID
	}()
	ro := b.startConsole(t, "CONSOLE_READ_ONLY=true")
	for _, op := range []string{"replay", "purge", "replay-all", "purge-all"} {
		code, body := post(t, ro, url.Values{"stream": {"message"}, "op": {op}, "id": {id}, "upto": {id}, "confirm": {"yes"}})
		if code != http.StatusForbidden || !strings.Contains(body, "read-only") {
			t.Errorf("read-only %s: %d %.200s", op, code, body)
		}
	}
	if _, body := get(t, ro+"/dead-letters?stream=message"); strings.Contains(body, `id="replay"`) || !strings.Contains(body, "Read-only") {
		t.Error("the read-only page offers replay or does not say it is read-only")
	}
	for _, h := range [][]string{{"Origin", "http://evil.example"}, {"Sec-Fetch-Site", "cross-site"}} {
		if code, _ := post(t, b.console, url.Values{"stream": {"message"}, "op": {"purge"}, "id": {id}}, h...); code != http.StatusForbidden {
			t.Errorf("POST with %s: %s answered %d, want 403", h[0], h[1], code)
		}
	}
	authed := b.startConsole(t, "CONSOLE_USER=ops", "CONSOLE_PASSWORD=s3cret")
	if code, _ := get(t, authed+"/"); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	u, _ := url.Parse(authed)
	u.User = url.UserPassword("ops", "wrong")
	if code, _ := get(t, u.String()+"/"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	u.User = url.UserPassword("ops", "s3cret")
	if code, _ := get(t, u.String()+"/"); code != http.StatusOK {
		t.Errorf("right credentials: %d, want 200", code)
	}

	long := strings.Repeat("9", 300)
	for _, tt := range []struct {
		name, query, want string
	}{
		{"unknown stream", "stream=nope", "stream"},
		{"hostile stream", "stream=%3Cscript%3E", "stream"},
		{"bad reason", "stream=message&reason=DROP%20TABLE", "reason"},
		{"bad cursor", "stream=message&after=abc", "after"},
		{"long cursor", "stream=message&after=" + long, "after"},
		{"repeated stream", "stream=message&stream=message", "stream"},
	} {
		code, body := get(t, b.console+"/dead-letters?"+tt.query)
		if code != http.StatusBadRequest || !strings.Contains(body, tt.want) || strings.Contains(body, "<script>") {
			t.Errorf("%s: %d %.300s", tt.name, code, body)
		}
	}
	for _, q := range []string{"stream=message", "stream=message&id=x", "stream=message&id=" + id + "&id=" + id} {
		if code, _ := get(t, b.console+"/dead-letters/entry?"+q); code != http.StatusBadRequest {
			t.Errorf("entry %s: %d, want 400", q, code)
		}
	}
	if code, _ := get(t, b.console+"/dead-letters/entry?stream=message&id=1-1"); code != http.StatusNotFound {
		t.Errorf("entry of an unknown id: %d, want 404", code)
	}
	many := url.Values{"stream": {"message"}, "op": {"purge"}}
	for i := range 1001 {
		many.Add("id", fmt.Sprintf("%d-0", i+1))
	}
	for _, tt := range []struct {
		name string
		form url.Values
		want string
	}{
		{"empty", url.Values{}, "op"},
		{"bad op", url.Values{"stream": {"message"}, "op": {"drop"}, "id": {id}}, "op"},
		{"two ops", url.Values{"stream": {"message"}, "op": {"purge", "replay"}, "id": {id}}, "op"},
		{"nothing selected", url.Values{"stream": {"message"}, "op": {"purge"}}, "selected"},
		{"bad id", url.Values{"stream": {"message"}, "op": {"purge"}, "id": {"1-1; FLUSHALL"}}, "id"},
		{"too many ids", many, "at most"},
		{"all without upto", url.Values{"stream": {"message"}, "op": {"purge-all"}, "confirm": {"yes"}}, "upto"},
		{"unknown stream", url.Values{"stream": {"x"}, "op": {"purge"}, "id": {id}}, "stream"},
	} {
		code, body := post(t, b.console, tt.form)
		if code != http.StatusBadRequest || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %.300s", tt.name, code, body)
		}
	}
	huge := url.Values{"stream": {"message"}, "op": {"purge"}, "id": {strings.Repeat("1", 300<<10)}}
	if code, _ := post(t, b.console, huge); code != http.StatusBadRequest {
		t.Errorf("an oversized form: %d, want 400", code)
	}
	if n, _ := testenv.Do(t, b.c, "XLEN", "chatpipe:dead:message").AsInt64(); n != 6 {
		t.Errorf("refused requests changed the dead letters: %d left", n)
	}
	// Purge of one id, same origin: 303 back to the list.
	req, _ := http.NewRequest(http.MethodPost, b.console+"/dead-letters/action", strings.NewReader(url.Values{"stream": {"message"}, "op": {"purge"}, "id": {id}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Header.Get("Location"), "purged+1") {
		t.Errorf("purge of one: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}
