// Package streams is the Valkey side of the flush path, and knows nothing of PostgreSQL: one
// consumer's view of a flush stream's consumer group (Group: create it, read with an optional
// replica confirmation, ack, touch, claim what dead consumers left, dead-letter atomically with
// the ack, trim below what every group acked, remove idle consumers), the dead-letter streams'
// list, replay and purge (DeadLetters), and the queue gauges (QueueMonitor). Package flush
// joins it to the sink.
package streams
