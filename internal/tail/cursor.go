package tail

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// pos is where a reader stands in one flush stream: the last entry it saw, and that entry's
// ordinal (see streams.Position).
type pos struct {
	ms, seq uint64
	ord     int64
}

func (p pos) id() string { return strconv.FormatUint(p.ms, 10) + "-" + strconv.FormatUint(p.seq, 10) }

func parseID(id string) (ms, seq uint64, err error) {
	a, b, ok := strings.Cut(id, "-")
	if !ok {
		return 0, 0, fmt.Errorf("stream id %q", id)
	}
	if ms, err = strconv.ParseUint(a, 10, 64); err == nil {
		seq, err = strconv.ParseUint(b, 10, 64)
	}
	return ms, seq, err
}

// cursorVersion is the first byte of every cursor, so that a later format can tell old ones.
const cursorVersion = 1

// ErrBadCursor: a cursor that this layout did not make.
var ErrBadCursor = errors.New("not a cursor of this stream")

// encodeCursor writes the positions of every shard of a tail as an opaque token: a version
// byte, the shard count, then per shard the ms, seq and ordinal as varints, base64url.
func encodeCursor(ps []pos) string {
	b := make([]byte, 0, 2+len(ps)*16)
	b = append(b, cursorVersion)
	b = binary.AppendUvarint(b, uint64(len(ps)))
	for _, p := range ps {
		b = binary.AppendUvarint(b, p.ms)
		b = binary.AppendUvarint(b, p.seq)
		b = binary.AppendUvarint(b, uint64(p.ord))
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxCursor bounds a cursor's length: 64 shards of the largest varints fit.
const maxCursor = 4096

// decodeCursor reads a cursor of shards positions.
func decodeCursor(s string, shards int) ([]pos, error) {
	if s == "" || len(s) > maxCursor {
		return nil, ErrBadCursor
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 || b[0] != cursorVersion {
		return nil, ErrBadCursor
	}
	b = b[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	n, ok := next()
	if !ok || n != uint64(shards) {
		return nil, ErrBadCursor
	}
	ps := make([]pos, shards)
	for i := range ps {
		ms, ok1 := next()
		seq, ok2 := next()
		ord, ok3 := next()
		if !ok1 || !ok2 || !ok3 || ord > 1<<62 {
			return nil, ErrBadCursor
		}
		ps[i] = pos{ms: ms, seq: seq, ord: int64(ord)}
	}
	if len(b) != 0 {
		return nil, ErrBadCursor
	}
	return ps, nil
}
