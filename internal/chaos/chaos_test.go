package chaos_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/valkey-io/valkey-go"
	"go.uber.org/goleak"

	chatpipe "github.com/chatpipe/chatpipe/client"
	"github.com/chatpipe/chatpipe/internal/testenv"
)

// TestMain ignores toxiproxy's own goroutines: a proxy stopped while a link's toxics are
// blocked sending leaves them parked in the library (its ToxicLink has no way to end them).
func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m,
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).write")))
}

// proc is one process of the system under test.
// deployment is the chatpipe of a run: the built binaries and the settings its ingest replicas
// and flush workers share. Each run describes its own in one literal; ingest and worker add
// what every run wants (the rate limit out of the way, a free metrics port, no migrations: the
// run migrated) and the process's own settings, which win over both.
type deployment struct {
	dir string
	// valkey are both binaries' Valkey settings: VALKEY_ADDR, VALKEY_MODE, KEY_LAYOUT, ...
	valkey []string
	// dsn is the workers' DATABASE_URL.
	dsn string
}

// newDeployment builds both binaries, creates and migrates a database, and returns the
// deployment of both on it with the Valkey settings given (VALKEY_ADDR=…, …).
func newDeployment(t *testing.T, valkey ...string) *deployment {
	t.Helper()
	dir := testenv.Build(t, "", "../../cmd/ingest", "../../cmd/flushworker")
	dsn := testenv.Postgres(t)
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	return &deployment{dir: dir, valkey: valkey, dsn: dsn}
}

// pair starts an ingest and a worker (consumer w1) with their own settings, kills both when the
// test ends, and returns them once ingest is ready, with its base URL.
func (d *deployment) pair(t *testing.T, ingestEnv, workerEnv []string) (in, w *proc, base string) {
	t.Helper()
	in, base = d.ingest(t, "ingest", ingestEnv...)
	w = d.worker(t, "w1", workerEnv...)
	in.start(t)
	w.start(t)
	killOnCleanup(t, in, w)
	testenv.WaitReady(t, base+"/readyz", 30*time.Second)
	return in, w, base
}

// ingest is an ingest replica on a free loopback address, with its base URL; start it.
func (d *deployment) ingest(t *testing.T, name string, env ...string) (*proc, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	p := &proc{name: name, bin: filepath.Join(d.dir, "ingest"), logs: &testenv.SyncBuffer{},
		env: slices.Concat([]string{"INGEST_ADDR=" + addr, "RATE_LIMIT=1000000", "RATE_WINDOW=1s"}, d.valkey, env)}
	return p, "http://" + addr
}

// worker is a flush worker whose consumer is name; start it.
func (d *deployment) worker(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	p := &proc{name: name, bin: filepath.Join(d.dir, "flushworker"), logs: &testenv.SyncBuffer{},
		env: slices.Concat([]string{"DATABASE_URL=" + d.dsn, "FLUSH_CONSUMER=" + name, "FLUSH_METRICS_ADDR=" + testenv.FreeAddr(t),
			"FLUSH_MIGRATE=false", "FLUSH_INTERVAL=100ms"}, d.valkey, env)}
	return p
}

type proc struct {
	name string
	bin  string
	env  []string
	logs *testenv.SyncBuffer
	mu   sync.Mutex
	cmd  *exec.Cmd
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(p.bin)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = io.Discard, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	p.mu.Lock()
	p.cmd = cmd
	p.mu.Unlock()
}

func (p *proc) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

// kill SIGKILLs the process and reaps it.
func (p *proc) kill() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// stop ends the process cleanly (SIGTERM) and waits for it.
func (p *proc) stop() {
	p.mu.Lock()
	cmd := p.cmd
	p.cmd = nil
	p.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// ledger is what the clients were told: the independent record the checker compares against.
type ledger struct {
	mu       sync.Mutex
	accepted map[string]map[int64]string // kind → cache id → token
	deleted  map[int64]bool              // public cache ids deleted (204)
	rejected map[string]string           // token → error code
	unknown  map[string]bool             // tokens with no definite answer after retries
	retried  int
	// onAccept, when set, is called on each 202, under mu.
	onAccept func()
	// owner is each token's sender.
	owner map[string]string
	// channel is each public token's channel.
	channel map[string]string
	// recent are the newest accepted messages, which the editors pick from (so that several
	// race on the same ones).
	recent []edited
	// edits is each message's edit answered 200 with the highest version; editsUnknown the
	// contents of edits with no definite answer (they may have been applied).
	edits        map[edited]editOutcome
	editsUnknown map[edited][]string
	// editsAnswered counts the edits answered 200; editsAfterDelete the edits of a deleted
	// message answered otherwise than 404 (a violation).
	editsAnswered, editsAfterDelete int
	// editors are the clients whose edits of a message were answered 200; answered their
	// versions, in the order the answers came.
	editors  map[edited]map[string]bool
	answered map[edited][]int64
}

// edited names an accepted message (ids of the two kinds may meet: the kind is part of the name).
type edited struct {
	kind  string
	id    int64
	token string
}

// editOutcome is an edit answered 200.
type editOutcome struct {
	version int64
	content string
}

func newLedger() *ledger {
	return &ledger{accepted: map[string]map[int64]string{"message": {}, "private_message": {}},
		deleted: map[int64]bool{}, rejected: map[string]string{}, unknown: map[string]bool{}, owner: map[string]string{}, channel: map[string]string{},
		edits: map[edited]editOutcome{}, editsUnknown: map[edited][]string{}, editors: map[edited]map[string]bool{}, answered: map[edited][]int64{}}
}

// privateUser is a user and the ids of the private messages answered 202 that involve them.
type privateUser struct {
	name string
	ids  []int64
}

// privateUsers lists the users of accepted private messages, senders and recipients, most
// messages first. It knows the clients' convention: the recipient of owner is "peer"+owner.
func (l *ledger) privateUsers() []privateUser {
	l.mu.Lock()
	defer l.mu.Unlock()
	by := map[string][]int64{}
	for id, token := range l.accepted["private_message"] {
		owner := l.owner[token]
		by[owner] = append(by[owner], id)
		by["peer"+owner] = append(by["peer"+owner], id)
	}
	out := make([]privateUser, 0, len(by))
	for u, ids := range by {
		if u != "" && u != "peer" {
			out = append(out, privateUser{u, ids})
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].ids) > len(out[j].ids) })
	return out
}

type client struct {
	// name tells the load's clients apart (the editors of a message).
	name string
	base string
	http *http.Client
	l    *ledger
	// channels, when set, spreads the public messages over channels; else they go to
	// /v1/messages, the default channel.
	channels *channelSet
}

// channelSet is n channels of the shapes chat servers use (UUIDs, digits, dotted, colon and
// tilde), picked with a skew: a few busy rooms and many quiet ones (Zipf-like, by the token's
// hash, so a run is the same every time).
type channelSet struct{ names []string }

func newChannelSet(n int) *channelSet {
	cs := &channelSet{}
	for i := range n {
		var name string
		switch i % 4 {
		case 0:
			name = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", i*2654435761%(1<<32), i%65536, i%4096, (i*7)%4096, i*40503)
		case 1:
			name = strconv.Itoa(1_000_000_000 + i*7919)
		case 2:
			name = fmt.Sprintf("team-%d.general", i)
		default:
			name = fmt.Sprintf("Org:Room~%d", i)
		}
		cs.names = append(cs.names, name)
	}
	return cs
}

// list is the channels (none for a nil set).
func (cs *channelSet) list() []string {
	if cs == nil {
		return nil
	}
	return cs.names
}

// byChannel is the accepted public ids of each channel, in order.
func (l *ledger) byChannel() map[string][]int64 {
	out := map[string][]int64{}
	for _, id := range sortedIDs(l.accepted["message"]) {
		ch := l.channel[l.accepted["message"][id]]
		out[ch] = append(out[ch], id)
	}
	return out
}

// pick is token's channel: channel k with weight 1/(k+1).
func (cs *channelSet) pick(token string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(token))
	u := float64(h.Sum64()%1_000_000) / 1_000_000
	// The harmonic weights' cumulative sum, inverted: k ≈ (n+1)^u - 1.
	k := int(math.Pow(float64(len(cs.names)+1), u)) - 1
	return cs.names[min(max(k, 0), len(cs.names)-1)]
}

// api is the Go client (package client) of c's ingest, on c's HTTP client, retrying what the
// server asks to be retried up to retries more times: the chaos clients send, edit and delete
// through it, so that the proofs exercise it.
func (c *client) api(retries int) *chatpipe.Client {
	api, err := chatpipe.New(c.base, chatpipe.WithHTTPClient(c.http),
		chatpipe.WithRetry(chatpipe.RetryPolicy{Attempts: retries + 1, Min: 100 * time.Millisecond, Max: 400 * time.Millisecond}))
	if err != nil {
		panic(err)
	}
	return api
}

// refusal is err when it is a definite refusal (a 4xx other than 429), else nil.
func refusal(err error) *chatpipe.Error {
	var e *chatpipe.Error
	if errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests {
		return e
	}
	return nil
}

// send sends one message carrying a unique token (its client_msg_id too), through the Go client,
// which retries until the answer is definite: accepted, or refused (4xx). An answer still
// unknown after the retries (about retries × 200 ms) is recorded as such.
func (c *client) send(kind, owner, token string, retries int) {
	d := chatpipe.Draft{OwnerID: owner, Username: owner, Content: "chaos " + token, ClientMsgID: token}
	channel := "general"
	switch {
	case kind == "private_message":
		channel, d.RecipientID = "", "peer"+owner
	case c.channels != nil:
		channel = c.channels.pick(token)
		d.Channel = channel
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(retries+1)*200*time.Millisecond+3*time.Second)
	defer cancel()
	var a chatpipe.Accepted
	var err error
	if kind == "private_message" {
		a, err = c.api(retries).SendPrivate(ctx, d)
	} else {
		a, err = c.api(retries).Send(ctx, d)
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	switch {
	case err == nil:
		if prev, ok := c.l.accepted[kind][a.CacheID]; ok && prev != token {
			c.l.rejected["id-reused:"+token] = fmt.Sprintf("cache id %d given to %s and %s", a.CacheID, prev, token)
		}
		c.l.accepted[kind][a.CacheID] = token
		c.l.owner[token] = owner
		if c.l.recent = append(c.l.recent, edited{kind, a.CacheID, token}); len(c.l.recent) > 64 {
			c.l.recent = c.l.recent[len(c.l.recent)-32:]
		}
		if channel != "" {
			c.l.channel[token] = channel
		}
		if a.Duplicate {
			c.l.retried++
		}
		if c.l.onAccept != nil {
			c.l.onAccept()
		}
	case refusal(err) != nil:
		c.l.rejected[token] = refusal(err).Code
	default:
		c.l.unknown[token] = true
	}
}

// drain reads an answer to its end and closes it: a body closed unread (even the newline after
// the JSON) makes the transport drop the connection, and the clients would churn TCP
// connections instead of loading ingest.
func drain(res *http.Response) {
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
}

// keepAlive is an HTTP client that keeps a connection per concurrent caller.
func keepAlive(timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
}

func (c *client) delete(id int64) { c.deleteOK(id) }

// deleteOK deletes a public message through the Go client (which retries until the answer is
// definite); false if it was not answered 204.
func (c *client) deleteOK(id int64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if err := c.api(20).Delete(ctx, "", id); err != nil {
		return false
	}
	c.l.mu.Lock()
	c.l.deleted[id] = true
	c.l.mu.Unlock()
	return true
}

// editedByMany counts the messages whose edits answered 200 came from more than one client
// (the edits' contents name the load step that sent them).
func (l *ledger) editedByMany() int {
	n := 0
	for _, steps := range l.editors {
		if len(steps) > 1 {
			n++
		}
	}
	return n
}

// edit has the author of message e replace its content through the Go client, which retries
// until the answer is definite: 200 (recorded when its version is the highest so far), or a
// 4xx. It returns the status (0: no definite answer).
func (c *client) edit(e edited, content string) int {
	c.l.mu.Lock()
	owner, channel := c.l.owner[e.token], c.l.channel[e.token]
	c.l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	version, err := c.api(30).Edit(ctx, chatpipe.Edit{Channel: channel, Private: e.kind == "private_message", CacheID: e.id, OwnerID: owner, Content: content})
	if e := refusal(err); e != nil {
		return e.Status
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if err != nil {
		c.l.editsUnknown[e] = append(c.l.editsUnknown[e], content)
		return 0
	}
	c.l.editsAnswered++
	if version > c.l.edits[e].version {
		c.l.edits[e] = editOutcome{version, content}
	}
	if c.l.editors[e] == nil {
		c.l.editors[e] = map[string]bool{}
	}
	c.l.editors[e][c.name] = true
	c.l.answered[e] = append(c.l.answered[e], version)
	return http.StatusOK
}

// editSome has owner's client edit one of the newest messages (several editors race on them);
// now and then it deletes an edited public message and edits it again, which must be 404.
func (c *client) editSome(rng *rand.Rand, token string) {
	c.l.mu.Lock()
	if len(c.l.recent) == 0 {
		c.l.mu.Unlock()
		return
	}
	e := c.l.recent[len(c.l.recent)-1-rng.IntN(min(len(c.l.recent), 8))]
	deleted := e.kind == "message" && c.l.deleted[e.id]
	c.l.mu.Unlock()
	var status int
	for k := range 1 + rng.IntN(3) { // several edits in a row, while other clients edit it too
		status = c.edit(e, fmt.Sprintf("chaos %s edit %s.%d", e.token, token, k))
	}
	if e.kind != "message" || status != http.StatusOK || deleted || rng.IntN(5) > 0 {
		return
	}
	if !c.deleteOK(e.id) {
		return
	}
	if status := c.edit(e, "chaos "+e.token+" after its deletion "+token); status != http.StatusNotFound && status != 0 {
		c.l.mu.Lock()
		c.l.editsAfterDelete++
		c.l.mu.Unlock()
	}
}

func settings() (seed uint64, dur time.Duration) {
	// make test runs a fixed schedule (seed 1); make chaos passes a fresh seed each time.
	seed = seedOr(1)
	dur = 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("CHAOS_DURATION")); err == nil && d > 0 {
		dur = min(d, 30*time.Minute)
	}
	return seed, dur
}

// seedOr is CHAOS_SEED, or def when it is not set (each run's fixed seed in make test).
func seedOr(def uint64) uint64 {
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func TestChaos(t *testing.T) {
	testenv.Slow(t, "the chaos run takes a while")
	seed, duration := settings()
	t.Logf("chaos: seed %d, duration %s (replay: CHAOS_SEED=%d CHAOS_DURATION=%s make chaos)", seed, duration, seed, duration)
	r := run(t, seed, duration, "", 10)
	if r.violations() > 0 {
		t.Errorf("invariants violated (replay with CHAOS_SEED=%d):\n  %s", seed, strings.Join(r.examples, "\n  "))
	}
	if r.messages == 0 {
		t.Error("no message was accepted: the run proved nothing")
	}
}

// TestChaosCatchesBrokenAck runs a worker built to ack before it writes (tag chaos_ackfirst)
// and SIGKILLs the workers while PostgreSQL is down (each then holds an acked, unwritten
// batch): the checker must report lost messages, or it proves nothing.
func TestChaosCatchesBrokenAck(t *testing.T) {
	testenv.Slow(t, "the chaos run takes a while")
	seed, _ := settings()
	r := run(t, seed, 10*time.Second, "chaos_ackfirst", 0)
	if r.lost == 0 {
		t.Fatalf("a worker that acks before writing was SIGKILLed %d times and the checker found nothing lost", r.faults["workers SIGKILLed during a postgres outage"])
	}
	t.Logf("the broken build lost %d messages: caught", r.lost)
}

// run starts everything, loads and injects faults for duration, drains and checks. kinds is
// the number of fault kinds drawn from (10: all); 0 instead kills every worker while
// PostgreSQL is down, the schedule that exposes a worker acking before it writes.
func run(t *testing.T, seed uint64, duration time.Duration, tags string, kinds int) result {
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := testenv.Build(t, tags, "../../cmd/ingest", "../../cmd/flushworker")
	v := testenv.StartValkey(t, "--appendonly", "yes", "--appendfsync", "always")
	dsn := testenv.Postgres(t)
	// The processes reach both servers through toxiproxy, which can delay, stall or reset
	// their connections; the checker and the fault injector go straight to the servers.
	pgURL, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	valkeyProxy, pgProxy := startProxy(t, "valkey", v.Addr), startProxy(t, "postgres", pgURL.Host)
	proxied := *pgURL
	proxied.Host = pgProxy.Listen
	proxiedDSN := proxied.String()
	testenv.Migrate(t, filepath.Join(dir, "flushworker"), dsn)
	d := &deployment{dir: dir, valkey: []string{"VALKEY_ADDR=" + valkeyProxy.Listen}, dsn: proxiedDSN}
	// Ingest reads PostgreSQL (through the proxy) to find the flushed messages clients edit.
	ingest, base := d.ingest(t, "ingest", "VALKEY_TIMEOUT=500ms", "DATABASE_URL="+proxiedDSN)
	ingest.start(t)
	var workers []*proc
	for i := range 3 {
		w := d.worker(t, fmt.Sprintf("w%d", i), "FLUSH_MIN_IDLE=2s", "VALKEY_TIMEOUT=2s")
		w.start(t)
		workers = append(workers, w)
	}
	killOnCleanup(t, append(workers, ingest)...)
	testenv.WaitReady(t, base+"/readyz", 20*time.Second)

	// Load: bounded in time, at most 8 clients.
	l := newLedger()
	// The public messages go to 50 channels (the checker finds each in its own).
	c := &client{base: base, http: keepAlive(3 * time.Second), l: l, channels: newChannelSet(50)}
	loadCtx, stopLoad := context.WithTimeout(context.Background(), duration)
	defer stopLoad()
	var load sync.WaitGroup
	var seq sync.Mutex
	next := 0
	for g := range 8 {
		grng := rand.New(rand.NewPCG(seed, uint64(g+1)))
		c := *c
		c.name = fmt.Sprintf("client %d", g)
		load.Go(func() {
			for loadCtx.Err() == nil {
				seq.Lock()
				next++
				token := fmt.Sprintf("t%d", next)
				seq.Unlock()
				owner := fmt.Sprintf("u%d", grng.IntN(200))
				switch r := grng.Float64(); {
				case r < 0.05:
					c.send("message", owner, token, 30)
					c.send("message", owner, token, 30) // a client's retry: must come back as the same id
				case r < 0.10:
					l.mu.Lock()
					var id int64
					for k := range l.accepted["message"] {
						id = k
						break
					}
					l.mu.Unlock()
					if id > 0 {
						c.delete(id)
					}
				case r < 0.12:
					c.send("message", "", token, 30) // invalid: rejected, must be nowhere
				case r < 0.20:
					c.editSome(grng, token)
				case r < 0.40:
					c.send("private_message", owner, token, 30)
				default:
					c.send("message", owner, token, 30)
				}
			}
		})
	}

	// Faults on a seeded schedule, from the test's goroutine.
	faults := map[string]int{}
	vc := v.Client(t)
	for loadCtx.Err() == nil {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		if loadCtx.Err() != nil {
			break
		}
		killDuringOutage := func() {
			done := make(chan struct{})
			go func() { defer close(done); testenv.RestartPostgres(t, 2*time.Second) }()
			time.Sleep(1500 * time.Millisecond)
			for _, w := range workers {
				w.kill()
				w.start(t)
			}
			<-done
			faults["workers SIGKILLed during a postgres outage"]++
		}
		if kinds == 0 {
			killDuringOutage()
			continue
		}
		switch f := rng.IntN(kinds); f {
		case 6:
			killDuringOutage()
		case 7, 8, 9:
			proxy := []*toxiproxy.Proxy{valkeyProxy, pgProxy}[rng.IntN(2)]
			toxic := [...]string{
				`{"name":"chaos","type":"latency","stream":"downstream","toxicity":1,"attributes":{"latency":300,"jitter":200}}`,
				`{"name":"chaos","type":"reset_peer","stream":"downstream","toxicity":1,"attributes":{"timeout":0}}`,
				`{"name":"chaos","type":"timeout","stream":"upstream","toxicity":1,"attributes":{"timeout":1500}}`,
			}[f-7]
			if _, err := proxy.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
				t.Fatalf("adding a toxic: %v", err)
			}
			time.Sleep(time.Duration(1000+rng.IntN(2000)) * time.Millisecond)
			if err := proxy.Toxics.RemoveToxic(context.Background(), "chaos"); err != nil {
				t.Fatalf("removing a toxic: %v", err)
			}
			faults[proxy.Name+" connections: "+[...]string{"delayed", "reset", "stalled"}[f-7]]++
		case 0, 1:
			w := workers[rng.IntN(len(workers))]
			w.kill()
			time.Sleep(300 * time.Millisecond)
			w.start(t)
			faults["worker SIGKILL + restart"]++
		case 2:
			w := workers[rng.IntN(len(workers))]
			w.signal(syscall.SIGSTOP)
			time.Sleep(3 * time.Second) // longer than FLUSH_MIN_IDLE: its entries get reclaimed
			w.signal(syscall.SIGCONT)
			faults["worker SIGSTOP 3s (zombie)"]++
		case 3:
			testenv.RestartPostgres(t, time.Duration(500+rng.IntN(2000))*time.Millisecond)
			faults["postgres restart"]++
		case 4:
			v.Stop()
			time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
			v.Restart() // AOF with appendfsync always: nothing acknowledged is lost
			faults["valkey restart"]++
		case 5:
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			err := vc.Do(ctx, vc.B().Arbitrary("XADD", "chatpipe:flush:message", "*", "cache_id", "999999999", "kind", "message", "payload", "{poison").Build()).Error()
			cancel()
			if err == nil {
				faults["poison entry"]++
			}
		}
	}
	load.Wait()

	// Drain: every worker up, every stream read and acked.
	for _, w := range workers {
		w.signal(syscall.SIGCONT)
		w.mu.Lock()
		dead := w.cmd == nil
		w.mu.Unlock()
		if dead {
			w.start(t)
		}
	}
	waitDrained(t, vc)
	for _, w := range workers {
		w.stop()
	}
	differ, examples := checkEditsRead(t, base, l)
	t.Logf("edited messages read back otherwise than their last edit (history, rings): %d", differ)
	r := check(t, seed, dsn, vc, l, faults, workers)
	r.readsDiffer = differ
	r.examples = append(r.examples, examples...)
	return r
}

// checkEditsRead reads every edited message that is not deleted back through ingest — history
// at its id, and its channel's or author's ring — and counts those whose content is not its last
// edit answered 200 (or an edit with no definite answer), with a few examples. (A broken build
// may differ: the caller judges.)
func checkEditsRead(t *testing.T, base string, l *ledger) (int, []string) {
	type msg struct {
		CacheID int64 `json:"cache_id"`
		Data    struct {
			Content string `json:"content"`
		} `json:"data"`
	}
	get := func(url string) []msg {
		res, err := http.Get(url)
		if err != nil {
			t.Fatalf("reading %s: %v", url, err)
		}
		var p struct{ Messages []msg }
		err = json.NewDecoder(res.Body).Decode(&p)
		drain(res)
		if res.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("reading %s: %d %v", url, res.StatusCode, err)
		}
		return p.Messages
	}
	rings := map[string]map[int64]string{}
	differ := 0
	var examples []string
	note := func(format string, args ...any) {
		if differ++; len(examples) < 5 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for m, e := range l.edits {
		kind, id, token := m.kind, m.id, m.token
		if kind == "message" && l.deleted[id] {
			continue
		}
		timeline := "/v1/channels/" + l.channel[token] + "/messages"
		if kind == "private_message" {
			timeline = "/v1/users/" + l.owner[token] + "/private-messages"
		}
		want := func(content string) bool {
			return content == e.content || slices.Contains(l.editsUnknown[m], content)
		}
		page := get(fmt.Sprintf("%s%s/history?before=%d&limit=1", base, timeline, id+1))
		if len(page) != 1 || page[0].CacheID != id || !want(page[0].Data.Content) {
			note("history of %s at %d: %+v, want %q", timeline, id, page, e.content)
		}
		if rings[timeline] == nil {
			rings[timeline] = map[int64]string{}
			for _, m := range get(base + timeline + "/recent") {
				rings[timeline][m.CacheID] = m.Data.Content
			}
		}
		if content, in := rings[timeline][id]; in && !want(content) {
			note("ring of %s holds %d as %q, want %q", timeline, id, content, e.content)
		}
	}
	return differ, examples
}

// waitDrained waits until, on both flush streams of the single layout (or the streams given),
// nothing is pending and the group has been delivered the stream's last entry.
func waitDrained(t *testing.T, vc valkey.Client, streams ...string) {
	t.Helper()
	if len(streams) == 0 {
		streams = []string{"chatpipe:flush:message", "chatpipe:flush:private_message"}
	}
	testenv.WaitFor(t, "the streams to drain", 120*time.Second, func() bool {
		for _, s := range streams {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			res := vc.DoMulti(ctx, vc.B().XinfoGroups().Key(s).Build(), vc.B().XinfoStream().Key(s).Build())
			cancel()
			groups, err := res[0].ToArray()
			if err != nil || len(groups) == 0 {
				return false
			}
			g, err := groups[0].AsMap()
			if err != nil {
				return false
			}
			info, err := res[1].AsMap()
			if err != nil {
				return false
			}
			pendingMsg, delivered, last := g["pending"], g["last-delivered-id"], info["last-generated-id"]
			pending, err1 := pendingMsg.AsInt64()
			d, err2 := delivered.ToString()
			l, err3 := last.ToString()
			if err1 != nil || err2 != nil || err3 != nil || pending != 0 || d != l {
				return false
			}
		}
		return true
	})
}

type result struct {
	messages, lost, duplicated, deletedPresent, rejectedPresent, extra, wrongContent, lostLogged int
	// readsDiffer counts edited messages that history or a ring showed otherwise than their
	// last edit.
	readsDiffer int
	faults      map[string]int
	examples    []string
}

func (r result) violations() int {
	return r.lost + r.duplicated + r.deletedPresent + r.rejectedPresent + r.extra + r.wrongContent + r.lostLogged + r.readsDiffer
}

// final is what the checker expects of message m's row: its content without "chaos " — the
// token, or its edit answered 200 with the highest version — and its channel.
func (l *ledger) final(m edited) string {
	content := m.token
	if e, ok := l.edits[m]; ok {
		content = strings.TrimPrefix(e.content, "chaos ")
	}
	return content + " " + l.channel[m.token]
}

// check is the independent checker: raw SQL and raw stream reads, no chatpipe package.
// deadStreams, when given, are the dead-letter streams by kind (else the single layout's).
func check(t *testing.T, seed uint64, dsn string, vc valkey.Client, l *ledger, faults map[string]int, workers []*proc, deadStreams ...map[string][]string) result {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A row reads "token channel": its content without "chaos ", and its channel ('' for a
	// private one).
	rows := map[string]map[int64]string{"message": {}, "private_message": {}}
	for kind, query := range map[string]string{"message": "SELECT cache_id, content, channel_id FROM chat_messages", "private_message": "SELECT cache_id, content, '' FROM private_messages"} {
		r, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var id int64
			var content, channel string
			_ = r.Scan(&id, &content, &channel)
			rows[kind][id] = strings.TrimPrefix(content, "chaos ") + " " + channel
		}
		r.Close()
	}
	dead := map[string]map[string]int{"message": {}, "private_message": {}}
	reasons := map[string]int{}
	deadKeys := map[string][]string{"message": {"chatpipe:dead:message"}, "private_message": {"chatpipe:dead:private_message"}}
	if len(deadStreams) > 0 {
		deadKeys = deadStreams[0]
	}
	for kind := range dead {
		var xs []valkey.XRangeEntry
		for _, key := range deadKeys[kind] {
			got, err := vc.Do(ctx, vc.B().Xrange().Key(key).Start("-").End("+").Build()).AsXRange()
			if err != nil && !valkey.IsValkeyNil(err) {
				t.Fatal(err)
			}
			xs = append(xs, got...)
		}
		for _, x := range xs {
			dead[kind][x.FieldValues["cache_id"]]++
			reason := x.FieldValues["error"]
			if i := strings.IndexAny(reason, ":("); i > 0 {
				reason = reason[:i]
			}
			reasons[reason]++
		}
	}
	var messages, lost, duplicated, deadLettered, deletedPresent, rejectedPresent, extra, wrongContent int
	var examples []string
	note := func(format string, args ...any) {
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for kind, ids := range l.accepted {
		for id, token := range ids {
			messages++
			key := strconv.FormatInt(id, 10)
			content, inPG := rows[kind][id]
			inDead := dead[kind][key]
			switch {
			case kind == "message" && l.deleted[id]:
				if inPG {
					deletedPresent++
					note("deleted %s %d is in PostgreSQL", kind, id)
				}
			case inPG && inDead > 0, inDead > 1:
				duplicated++
				note("%s %d is in PostgreSQL and/or the dead letters %d times", kind, id, inDead)
			case inDead == 1:
				deadLettered++
			case !inPG:
				lost++
				note("%s %d (%s) is nowhere", kind, id, token)
			case content != l.final(edited{kind, id, token}):
				if slices.ContainsFunc(l.editsUnknown[edited{kind, id, token}], func(c string) bool { return strings.TrimPrefix(c, "chaos ")+" "+l.channel[token] == content }) {
					break // an edit without a definite answer, applied after all
				}
				wrongContent++
				note("%s %d holds %q, want %q (its last edit answered 200, or its token; and its channel)", kind, id, content, l.final(edited{kind, id, token}))
			}
		}
		for id, content := range rows[kind] {
			token, _, _ := strings.Cut(content, " ") // the row reads "token channel"
			if _, ok := ids[id]; !ok && !l.unknown[token] {
				extra++
				note("%s %d (%q) is in PostgreSQL but no client was given it", kind, id, content)
			}
		}
	}
	for kind := range rows {
		for _, content := range rows[kind] {
			if _, ok := l.rejected[content]; ok {
				rejectedPresent++
				note("rejected message %q is in PostgreSQL", content)
			}
		}
	}
	for token, why := range l.rejected {
		if strings.HasPrefix(token, "id-reused:") {
			duplicated++
			note("%s", why)
		}
	}
	var lostLogged int
	for _, w := range workers {
		lostLogged += strings.Count(w.logs.String(), "deleted from the stream before they were persisted")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\nchaos run, seed %d\n", seed)
	line := func(k string, v any) { fmt.Fprintf(&b, "  %-36s %v\n", k, v) }
	line("messages given a cache id", messages)
	line("  answered as retries (same client_msg_id)", l.retried)
	line("  deleted", len(l.deleted))
	line("  edits answered 200", l.editsAnswered)
	line("  messages edited", len(l.edits))
	line("  of them by more than one client", l.editedByMany())
	line("  edits with no definite answer", len(l.editsUnknown))
	line("rejected by ingest (4xx)", len(l.rejected))
	line("no definite answer (not counted)", len(l.unknown))
	names := make([]string, 0, len(faults))
	for k := range faults {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		line("fault: "+k, faults[k])
	}
	line("lost", lost)
	line("duplicated", duplicated)
	line("deleted but present", deletedPresent)
	line("rejected but present", rejectedPresent)
	line("in PostgreSQL but never given", extra)
	line("content differs (edits included)", wrongContent)
	line("edits of deleted messages not 404", l.editsAfterDelete)
	line("unflushed entries trimmed (logged)", lostLogged)
	line("dead-lettered accepted messages", deadLettered)
	for r, n := range reasons {
		line("  dead letter reason: "+r, n)
	}
	t.Log(b.String())
	return result{messages: messages, lost: lost, duplicated: duplicated, deletedPresent: deletedPresent,
		rejectedPresent: rejectedPresent, extra: extra, wrongContent: wrongContent + l.editsAfterDelete, lostLogged: lostLogged,
		faults: faults, examples: examples}
}

// startProxy starts a toxiproxy proxy on a free loopback port in front of upstream.
func startProxy(t *testing.T, name, upstream string) *toxiproxy.Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("starting the %s proxy: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return p
}

// killOnCleanup kills the processes when the test ends, and prints the tail of their logs
// when it failed.
func killOnCleanup(t *testing.T, procs ...*proc) {
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
		if t.Failed() {
			for _, p := range procs {
				t.Logf("--- %s log (tail):\n%s", p.name, tail(p.logs.String(), 30))
			}
		}
	})
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
