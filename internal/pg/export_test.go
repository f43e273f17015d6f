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
	err := s.insertIsolated(ctx, kind, recs, idx, &res)
	return res, err
}
