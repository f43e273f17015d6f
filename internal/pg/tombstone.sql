-- Records deletions; $1 is the kind.
INSERT INTO deleted_messages (kind, cache_id, stream_id)
SELECT $1, t.cache_id, t.stream_id
FROM unnest($2::bigint[], $3::text[]) AS t (cache_id, stream_id)
ON CONFLICT (kind, cache_id) DO NOTHING
