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
}

// ReadBacklogs runs the queries in one pipelined round trip (on a cluster, each at its stream's
// node at once), results in order. Entries trimmed meanwhile were acked, so are in PostgreSQL:
// a reader that reads the backlog before PostgreSQL misses nothing.
func ReadBacklogs(ctx context.Context, c valkey.Client, qs []BacklogQuery) ([]BacklogPage, error) {
	calls := make([]lua.Call, len(qs))
	for i, q := range qs {
		dir, cur := "f", strconv.FormatInt(q.Cursor, 10)
		if q.Before {
			dir = "b"
			if q.Cursor == 0 {
				cur = ""
			}
		}
		wp := "0"
		if q.WithPending {
			wp = "1"
		}
		calls[i] = lua.Call{Keys: []string{q.Stream, q.PendingDeletes}, Args: []string{dir, cur, q.Resume, strconv.Itoa(max(q.Max, 1)), wp}}
	}
	out := make([]BacklogPage, len(qs))
	for i, r := range backlogScript.ExecMulti(ctx, c, calls) {
		p, err := parseBacklog(r)
		if err != nil {
			return nil, fmt.Errorf("reading the backlog of %s: %w", qs[i].Stream, err)
		}
		out[i] = p
	}
	return out, nil
}

func parseBacklog(r valkey.ValkeyResult) (BacklogPage, error) {
	var p BacklogPage
	v, err := r.ToArray()
	if err != nil {
		return p, err
	}
	if len(v) != 4 {
		return p, fmt.Errorf("unexpected reply of %d items", len(v))
	}
	if first, _ := v[0].AsStrSlice(); len(first) == 2 {
		p.FirstID = first[0]
		p.FirstCacheID, _ = strconv.ParseInt(first[1], 10, 64)
	}
	p.Next, _ = v[1].ToString()
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
	for i := 0; i+2 < len(es); i += 3 {
		sid, _ := es[i].ToString()
		raw, _ := es[i+1].ToString()
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			continue
		}
		fv, err := es[i+2].AsStrSlice()
		if err != nil {
			return p, err
		}
		fields := make(map[string]string, len(fv)/2)
		for j := 0; j+1 < len(fv); j += 2 {
			fields[fv[j]] = fv[j+1]
		}
		p.Entries = append(p.Entries, BacklogEntry{StreamID: sid, CacheID: id, Fields: fields})
	}
	return p, nil
}
