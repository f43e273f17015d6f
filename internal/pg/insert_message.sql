-- Writes a batch of public messages in one statement (one round trip), idempotent on cache_id:
-- a redelivered entry, or one repeated within the batch, makes no second row. A tombstoned id
-- is skipped. Batches of pg.CopyMin or more go by COPY first (copy.go); this statement writes
-- the smaller ones, and the batches COPY could not write (a row already there, a row refused).
-- BenchmarkInsert, batches of 500, this 2-core machine: COPY straight into the table 315 000
-- rows/s, this INSERT 262 000, COPY into a temporary table then INSERT … SELECT 187 000.
INSERT INTO chat_messages (cache_id, owner_id, channel_id, username, content, created_at, stream_id)
SELECT t.cache_id, t.owner_id, t.channel_id, t.username, t.content, t.created_at, t.stream_id
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
    AS t (cache_id, owner_id, channel_id, username, content, created_at, stream_id)
WHERE NOT EXISTS (
    SELECT 1 FROM deleted_messages d WHERE d.kind = 'message' AND d.cache_id = t.cache_id
)
ON CONFLICT (cache_id) DO NOTHING
