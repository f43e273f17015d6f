// Package chaos holds the fault-injection run that proves the invariants of docs/design.md on
// the real processes (see chaos_test.go): ingest and three flush workers built from the repository,
// real Valkey (AOF, appendfsync always) and PostgreSQL, a bounded load, and faults chosen by a
// seeded random schedule. An independent checker, sharing no code with the worker's write path,
// then compares every cache id a client was given with PostgreSQL and the dead-letter streams.
//
//	make chaos                                  # 2 minutes, a fresh seed (printed)
//	CHAOS_SEED=42 CHAOS_DURATION=5m make chaos  # replay a seed
//
// A short run (about 20 s, seed 1) is part of make test; -short skips it.
package chaos
