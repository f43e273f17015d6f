package pg

import (
	"context"

	"github.com/chatpipe/chatpipe/internal/message"
)

// PersistInsert writes messages the INSERT way whatever their number, for BenchmarkInsert.
func (s *Store) PersistInsert(ctx context.Context, kind message.Kind, recs []message.Record) (Result, error) {
	idx := make([]int, len(recs))
	for i := range idx {
		idx[i] = i
	}
	var res Result
	t := tableOf(kind)
	err := s.writeIsolated(ctx, kind, t.insert, t.row, recs, idx, &res.Inserted, &res)
	return res, err
}
