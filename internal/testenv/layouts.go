package testenv

import (
	"testing"

	"github.com/chatpipe/chatpipe/internal/keyspace"
)

// Layouts are the key layouts every suite runs in, under prefix: the single one and the
// partitioned one (DefaultPartitions). A suite that holds both layouts to one behaviour takes
// them from here, so that a layout added later runs in every such suite.
func Layouts(t testing.TB, prefix string) []keyspace.Layout {
	t.Helper()
	single, err := keyspace.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	part, err := keyspace.NewPartitioned(prefix, keyspace.DefaultPartitions)
	if err != nil {
		t.Fatal(err)
	}
	return []keyspace.Layout{single, part}
}
