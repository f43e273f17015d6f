package console

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/chatpipe/chatpipe/internal/keyspace"
	"github.com/chatpipe/chatpipe/internal/streams"
)

// streamRow is one flush stream on the overview.
type streamRow struct {
	Label     string
	State     streams.QueueState
	EndToEnd  time.Duration // age of the oldest entry not yet written: pending or unread
	Consumers []consumerRow
	Err       string
}

type consumerRow struct {
	Name    string
	Pending int64
	Idle    time.Duration
	Stale   bool // idle past MinIdle: its pending entries will be reclaimed
}

type overviewData struct {
	Streams  []streamRow
	Rate     map[string]string
	RateErr  string
	MinIdle  time.Duration
	Group    string
	Layout   string
	Problems []string // empty: healthy
	At       string
}

// overview reads, per flush stream, three pipelined round trips (the queue state; the oldest
// unread entry and the consumers), the streams eight at a time, and the rate-limit hash.
func (c *Console) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	rows := make([]streamRow, len(c.streams))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, fs := range c.streams {
		g.Go(func() error {
			rows[i] = c.readStream(gctx, fs)
			return nil
		})
	}
	d := overviewData{MinIdle: c.cfg.MinIdle, Group: c.cfg.Group, Layout: c.cfg.Layout.Name(), At: time.Now().UTC().Format(time.RFC3339)}
	rate, err := c.cfg.Valkey.Do(ctx, c.cfg.Valkey.B().Hgetall().Key(c.cfg.Layout.RateSettings()).Build()).AsStrMap()
	if err != nil {
		d.RateErr = err.Error()
	}
	d.Rate = rate
	_ = g.Wait()
	failed := 0
	for _, row := range rows {
		switch {
		case row.Err != "":
			failed++
			d.Problems = append(d.Problems, row.Label+": "+row.Err)
		case row.State.Consumers == 0 && (row.State.Lag > 0 || row.State.Pending > 0):
			d.Problems = append(d.Problems, row.Label+": entries waiting and no consumer")
		case row.State.DeadLetters > 0:
			d.Problems = append(d.Problems, fmt.Sprintf("%s: %d dead letters", row.Label, row.State.DeadLetters))
		}
		for _, cr := range row.Consumers {
			if cr.Stale && cr.Pending > 0 {
				d.Problems = append(d.Problems, fmt.Sprintf("%s: consumer %s idle %s with %d pending", row.Label, cr.Name, age(cr.Idle), cr.Pending))
			}
		}
	}
	// Partitions with nothing to show stay off the page: 32 empty rows hide the one that matters.
	for _, row := range rows {
		if row.Err != "" || row.State.Length > 0 || row.State.DeadLetters > 0 || row.State.Consumers > 0 || len(rows) <= 2 {
			d.Streams = append(d.Streams, row)
		}
	}
	status := http.StatusOK
	if failed == len(rows) {
		w.Header().Set("Retry-After", "5")
		status = http.StatusServiceUnavailable
	}
	c.render(w, status, "overview.html", page{Title: "Overview", Data: d})
}

func (c *Console) readStream(ctx context.Context, fs keyspace.FlushStream) streamRow {
	row := streamRow{Label: fs.Label()}
	st, err := streams.ReadQueue(ctx, c.cfg.Valkey, fs, c.cfg.Group)
	if err != nil {
		row.Err = "Valkey: " + err.Error()
		return row
	}
	row.State, row.EndToEnd = st, st.OldestPendingAge
	if st.Lag > 0 && st.LastDelivered != "" {
		// The oldest entry the group has not read: the first after its last-delivered id.
		xs, err := c.cfg.Valkey.Do(ctx, c.cfg.Valkey.B().Xrange().Key(fs.Stream).Start("("+st.LastDelivered).End("+").Count(1).Build()).AsXRange()
		if err == nil && len(xs) == 1 {
			if t, ok := streams.IDTime(xs[0].ID); ok {
				row.EndToEnd = max(row.EndToEnd, time.Since(t))
			}
		}
	}
	if st.LastDelivered != "" {
		cs, err := streams.ReadConsumers(ctx, c.cfg.Valkey, fs.Stream, c.cfg.Group)
		if err != nil {
			row.Err = "Valkey: " + err.Error()
		}
		for _, ci := range cs {
			row.Consumers = append(row.Consumers, consumerRow{Name: ci.Name, Pending: ci.Pending, Idle: ci.Idle, Stale: ci.Idle > c.cfg.MinIdle})
		}
	}
	return row
}

var (
	streamIDPattern = regexp.MustCompile(`^\d{1,20}-\d{1,20}$`)
	reasonPattern   = regexp.MustCompile(`^[a-z_]{1,32}$`)
)

// maxScan bounds what one dead-letter page reads while it looks for a reason: a filter that
// matches little shows a page of what it found and a link on from where it stopped.
const maxScan = 5000

type letterRow struct {
	ID, OriginalID, CacheID, Reason, Error, Deliveries, Consumer, FailedAt string
}

type listData struct {
	Streams         []string
	Stream          string
	Reason          string
	Reasons         []string
	Letters         []letterRow
	Total           int64
	Newest          string // the newest id shown: "all" stops there
	Next            url.Values
	First           url.Values
	Scanned         bool // the scan bound was hit before a full page
	ConfirmOp       string
	ConfirmQuestion string
}

var knownReasons = []string{"decode", "rejected", "poison", "id_reused", "unknown"}

// listQuery reads and checks the stream, reason and after parameters.
func (c *Console) listQuery(v url.Values) (keyspace.FlushStream, string, string, error) {
	for _, k := range []string{"stream", "reason", "after"} {
		if len(v[k]) > 1 {
			return keyspace.FlushStream{}, "", "", fmt.Errorf("%s is given %d times", k, len(v[k]))
		}
	}
	label := v.Get("stream")
	if label == "" {
		label = c.streams[0].Label()
	}
	fs, ok := c.streamByLabel(label)
	if !ok {
		return fs, "", "", fmt.Errorf("stream: %.64q is not a flush stream of this layout", label)
	}
	reason := v.Get("reason")
	if reason != "" && !reasonPattern.MatchString(reason) {
		return fs, "", "", fmt.Errorf("reason: %.64q is not a reason (%v)", reason, knownReasons)
	}
	after := v.Get("after")
	if after != "" && !streamIDPattern.MatchString(after) {
		return fs, "", "", fmt.Errorf("after: %.64q is not a stream id", after)
	}
	return fs, reason, after, nil
}

func (c *Console) deadLetters(w http.ResponseWriter, r *http.Request) {
	fs, reason, after, err := c.listQuery(r.URL.Query())
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	d, err := c.list(r, fs, reason, after)
	if err != nil {
		c.fail(w, http.StatusServiceUnavailable, "reading the dead letters from Valkey failed: "+err.Error())
		return
	}
	c.render(w, http.StatusOK, "deadletters.html", page{Title: "Dead letters", Flash: r.URL.Query().Get("done"), Data: d})
}

// list reads one page of fs's dead letters after `after`, those of reason only when given.
func (c *Console) list(r *http.Request, fs keyspace.FlushStream, reason, after string) (listData, error) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	d := listData{Stream: fs.Label(), Reason: reason, Reasons: knownReasons}
	for _, s := range c.streams {
		d.Streams = append(d.Streams, s.Label())
	}
	total, err := c.dl.Len(ctx, fs)
	if err != nil {
		return d, err
	}
	d.Total = total
	cursor, scanned := after, 0
	for len(d.Letters) < c.cfg.PageSize && scanned < maxScan {
		letters, err := c.dl.List(ctx, fs, cursor, min(500, maxScan-scanned))
		if err != nil {
			return d, err
		}
		if len(letters) == 0 {
			cursor = ""
			break
		}
		for _, l := range letters {
			scanned++
			cursor = l.ID
			if reason != "" && l.Reason() != reason {
				continue
			}
			f := l.Fields
			d.Letters = append(d.Letters, letterRow{ID: l.ID, OriginalID: f["original_id"], CacheID: f["cache_id"], Reason: l.Reason(),
				Error: f["error"], Deliveries: f["deliveries"], Consumer: f["consumer"], FailedAt: f["failed_at"]})
			d.Newest = l.ID
			if len(d.Letters) == c.cfg.PageSize {
				break
			}
		}
	}
	base := url.Values{"stream": {fs.Label()}}
	if reason != "" {
		base.Set("reason", reason)
	}
	if cursor != "" {
		d.Next = cloneWith(base, "after", cursor)
		d.Scanned = scanned >= maxScan && len(d.Letters) < c.cfg.PageSize
	}
	if after != "" {
		d.First = base
	}
	return d, nil
}

func cloneWith(v url.Values, k, val string) url.Values {
	out := url.Values{}
	for key, vs := range v {
		out[key] = slices.Clone(vs)
	}
	out.Set(k, val)
	return out
}

type entryData struct {
	Stream string
	ID     string
	Fields [][2]string
}

func (c *Console) entry(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fs, _, _, err := c.listQuery(url.Values{"stream": q["stream"]})
	id := q.Get("id")
	switch {
	case err != nil:
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	case len(q["id"]) != 1 || !streamIDPattern.MatchString(id):
		c.fail(w, http.StatusBadRequest, fmt.Sprintf("id: %.64q is not one stream id", id))
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	xs, err := c.cfg.Valkey.Do(ctx, c.cfg.Valkey.B().Xrange().Key(fs.DeadLetter).Start(id).End(id).Build()).AsXRange()
	if err != nil {
		c.fail(w, http.StatusServiceUnavailable, "reading the dead letter from Valkey failed: "+err.Error())
		return
	}
	if len(xs) == 0 {
		c.fail(w, http.StatusNotFound, fmt.Sprintf("%s has no dead letter %s (replayed or purged?)", fs.Label(), id))
		return
	}
	d := entryData{Stream: fs.Label(), ID: id}
	keys := make([]string, 0, len(xs[0].FieldValues))
	for k := range xs[0].FieldValues {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		d.Fields = append(d.Fields, [2]string{k, xs[0].FieldValues[k]})
	}
	c.render(w, http.StatusOK, "entry.html", page{Title: "Dead letter " + id, Data: d})
}

// maxIDs bounds the dead letters one form may name.
const maxIDs = 1000

// action replays or purges dead letters: the ids checked on the page, or every one up to the
// newest the page showed (of its reason, when filtered), the latter only after a confirmation.
func (c *Console) action(w http.ResponseWriter, r *http.Request) {
	if c.cfg.ReadOnly {
		c.fail(w, http.StatusForbidden, "this console is read-only (CONSOLE_READ_ONLY=true): nothing was changed")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 256<<10)
	if err := r.ParseForm(); err != nil {
		c.fail(w, http.StatusBadRequest, "reading the form: "+err.Error())
		return
	}
	f := r.PostForm
	fs, reason, _, err := c.listQuery(url.Values{"stream": f["stream"], "reason": f["reason"]})
	if err != nil {
		c.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	op := f.Get("op")
	all := false
	switch op {
	case "replay", "purge":
	case "replay-all", "purge-all":
		all, op = true, op[:len(op)-4]
	default:
		c.fail(w, http.StatusBadRequest, fmt.Sprintf("op: %.32q is not replay, purge, replay-all or purge-all", op))
		return
	}
	ids := f["id"]
	switch {
	case len(f["op"]) != 1:
		c.fail(w, http.StatusBadRequest, "op: give one")
		return
	case !all && len(ids) == 0:
		c.fail(w, http.StatusBadRequest, "no dead letter selected: check some, or use the buttons for all")
		return
	case len(ids) > maxIDs:
		c.fail(w, http.StatusBadRequest, fmt.Sprintf("at most %d dead letters at once", maxIDs))
		return
	}
	for _, id := range ids {
		if !streamIDPattern.MatchString(id) {
			c.fail(w, http.StatusBadRequest, fmt.Sprintf("id: %.64q is not a stream id", id))
			return
		}
	}
	upto := f.Get("upto")
	if all && !streamIDPattern.MatchString(upto) {
		c.fail(w, http.StatusBadRequest, fmt.Sprintf("upto: %.64q is not a stream id", upto))
		return
	}
	if all && f.Get("confirm") != "yes" {
		what := "every dead letter"
		if reason != "" {
			what = "every " + reason + " dead letter"
		}
		d := listData{Stream: fs.Label(), Reason: reason, Newest: upto, ConfirmOp: op + "-all",
			ConfirmQuestion: fmt.Sprintf("%s %s of %s up to %s?", map[string]string{"replay": "Replay", "purge": "Purge"}[op], what, fs.Label(), upto)}
		c.render(w, http.StatusOK, "confirm.html", page{Title: "Confirm", Data: d})
		return
	}
	ctx, cancel := c.ctx(r)
	defer cancel()
	done, missing := 0, 0
	if all {
		var match func(streams.DeadLetter) bool
		if reason != "" {
			match = func(l streams.DeadLetter) bool { return l.Reason() == reason }
		}
		done, err = c.dl.ApplyAll(ctx, fs, streams.DLQOp(op), streams.ApplyAllOptions{UpTo: upto, Match: match})
	} else {
		done, missing, err = c.dl.ApplyIDs(ctx, []keyspace.FlushStream{fs}, streams.DLQOp(op), ids)
	}
	verb := streams.DLQOp(op).Past()
	c.cfg.Logger.InfoContext(ctx, "console: dead letters "+verb, "stream", fs.Label(), "count", done, "all", all, "remote", r.RemoteAddr)
	if err != nil {
		c.fail(w, http.StatusServiceUnavailable, fmt.Sprintf("%s %d, then Valkey failed: %v", verb, done, err))
		return
	}
	msg := verb + " " + strconv.Itoa(done) + " dead letters"
	if missing > 0 {
		msg += fmt.Sprintf(" (%d were gone already)", missing)
	}
	back := url.Values{"stream": {fs.Label()}, "done": {msg}}
	if reason != "" {
		back.Set("reason", reason)
	}
	http.Redirect(w, r, "/dead-letters?"+back.Encode(), http.StatusSeeOther)
}
