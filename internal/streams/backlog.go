package streams

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"

	"github.com/valkey-io/valkey-go"

	"github.com/chatpipe/chatpipe/internal/lua"
)

//go:embed backlog.lua
var backlogSrc string

var backlogScript = lua.NewScript("backlog", backlogSrc)

//go:embed indexed.lua
var indexedSrc string

var indexedScript = lua.NewScript("indexed", indexedSrc)

// BacklogQuery asks one flush stream for its messages on one side of a cache id.
type BacklogQuery struct {
	// Stream and PendingDeletes are the stream's key and its pending deletions' key.
	Stream, PendingDeletes string
	// Before reads ids below Cursor, newest first; else ids above it, oldest first.
	Before bool
	// Cursor is the exclusive bound; 0 reads from the newest (Before) or the oldest.
	Cursor int64
	// Resume is BacklogPage.Next of the previous call, to go on where it stopped.
	Resume string
	// Max bounds the entries scanned by this call.
	Max int
	// WithPending asks for the pending deletions too.
	WithPending bool
	// Index and IndexedSince, when set, read the messages named by the backlog index Index (of
	// one timeline) instead of scanning the stream: up to Max of them, in one call (Next is "").
	// When the stream holds entries from before its indexes, the page says Unindexed and holds
	// no entries: scan instead.
	Index, IndexedSince string
}

// BacklogEntry is a message entry of a flush stream.
type BacklogEntry struct {
	StreamID string
	CacheID  int64
	// Fields are every field of the entry, as message.DecodeEntry takes them.
	Fields map[string]string
}

// BacklogPage is what one call read.
type BacklogPage struct {
	// FirstID and FirstCacheID are the stream id and cache id of the stream's oldest message
	// (empty and 0 when it holds none): the watermark below which every message is final in
	// PostgreSQL.
	FirstID      string
	FirstCacheID int64
	// Next is where a further call goes on; "" when the scan reached the stream's end.
	Next string
	// Pending lists the pending deletions' cache ids (WithPending).
	Pending []int64
	// Entries are the messages in range, in scan order.
	Entries []BacklogEntry
	// Unindexed: the stream holds entries older than its indexes (Index queries).
	Unindexed bool
}

// ReadBacklogs runs the queries in one pipelined round trip a script (on a cluster, each at its
// stream's node at once), results in order. Entries trimmed meanwhile were acked, so are in
// PostgreSQL: a reader that reads the backlog before PostgreSQL misses nothing.
func ReadBacklogs(ctx context.Context, c valkey.Client, qs []BacklogQuery) ([]BacklogPage, error) {
	out := make([]BacklogPage, len(qs))
	var scans, indexed []int
	for i, q := range qs {
		if q.Index != "" {
			indexed = append(indexed, i)
		} else {
			scans = append(scans, i)
		}
	}
	if err := scanning.read(ctx, c, qs, scans, out); err != nil {
		return nil, err
	}
	if err := byIndex.read(ctx, c, qs, indexed, out); err != nil {
		return nil, err
	}
	return out, nil
}

// args are a query's direction, cursor, and pending flag as the scripts take them.
func (q BacklogQuery) args() (dir, cur, wp string) {
	dir, cur, wp = "f", strconv.FormatInt(q.Cursor, 10), "0"
	if q.Before {
		dir = "b"
		if q.Cursor == 0 {
			cur = ""
		}
	}
	if q.WithPending {
		wp = "1"
	}
	return dir, cur, wp
}

// reader is a way of reading a backlog: its script, the script's call for a query, and how the
// first two items of its reply ({…, …, pending, entries}) fill a page.
type reader struct {
	script *lua.Script
	call   func(q BacklogQuery) lua.Call
	head   func(p *BacklogPage, a, b valkey.ValkeyMessage)
}

// scanning scans the stream (backlog.lua): {first message {id, cache id}, next, …}.
var scanning = reader{
	script: backlogScript,
	call: func(q BacklogQuery) lua.Call {
		dir, cur, wp := q.args()
		return lua.Call{Keys: []string{q.Stream, q.PendingDeletes}, Args: []string{dir, cur, q.Resume, strconv.Itoa(max(q.Max, 1)), wp}}
	},
	head: func(p *BacklogPage, a, b valkey.ValkeyMessage) {
		if first, _ := a.AsStrSlice(); len(first) == 2 {
			p.FirstID = first[0]
			p.FirstCacheID, _ = strconv.ParseInt(first[1], 10, 64)
		}
		p.Next, _ = b.ToString()
	},
}

// byIndex reads a timeline's entries named by its backlog index (indexed.lua): {first entry
// id, unindexed, …}.
var byIndex = reader{
	script: indexedScript,
	call: func(q BacklogQuery) lua.Call {
		dir, cur, wp := q.args()
		return lua.Call{Keys: []string{q.Stream, q.PendingDeletes, q.Index, q.IndexedSince}, Args: []string{dir, cur, strconv.Itoa(max(q.Max, 1)), wp}}
	},
	head: func(p *BacklogPage, a, b valkey.ValkeyMessage) {
		p.FirstID, _ = a.ToString()
		unindexed, _ := b.AsInt64()
		p.Unindexed = unindexed == 1
	},
}

// read runs the queries qs[at] into out.
func (rd reader) read(ctx context.Context, c valkey.Client, qs []BacklogQuery, at []int, out []BacklogPage) error {
	if len(at) == 0 {
		return nil
	}
	calls := make([]lua.Call, len(at))
	for j, i := range at {
		calls[j] = rd.call(qs[i])
	}
	for j, r := range rd.script.ExecMulti(ctx, c, calls) {
		p, err := rd.parse(r)
		if err != nil {
			return fmt.Errorf("reading the backlog of %s: %w", qs[at[j]].Stream, err)
		}
		out[at[j]] = p
	}
	return nil
}

func (rd reader) parse(r valkey.ValkeyResult) (BacklogPage, error) {
	var p BacklogPage
	v, err := r.ToArray()
	if err != nil {
		return p, err
	}
	if len(v) != 4 {
		return p, fmt.Errorf("unexpected reply of %d items", len(v))
	}
	rd.head(&p, v[0], v[1])
	pend, _ := v[2].AsStrSlice()
	for _, s := range pend {
		if id, err := strconv.ParseInt(s, 10, 64); err == nil {
			p.Pending = append(p.Pending, id)
		}
	}
	es, err := v[3].ToArray()
	if err != nil {
		return p, err
	}
	p.Entries, err = parseEntries(es)
	return p, err
}

// parseEntries reads the stream id, cache id, fields, … triples of the scripts' replies.
func parseEntries(es []valkey.ValkeyMessage) ([]BacklogEntry, error) {
	var out []BacklogEntry
	for i := 0; i+2 < len(es); i += 3 {
		sid, _ := es[i].ToString()
		raw, _ := es[i+1].ToString()
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			continue
		}
		fv, err := es[i+2].AsStrSlice()
		if err != nil {
			return nil, err
		}
		fields := make(map[string]string, len(fv)/2)
		for j := 0; j+1 < len(fv); j += 2 {
			fields[fv[j]] = fv[j+1]
		}
		out = append(out, BacklogEntry{StreamID: sid, CacheID: id, Fields: fields})
	}
	return out, nil
}
