-- Applies a batch of edits of public messages in one statement. An edit carries the whole new
-- message, so an edit that arrives before its message's insert (another worker, either commit
-- order) writes the row, and the insert then finds it and writes nothing. A stored row keeps a
-- higher version than the edit's (an older edit never overwrites a newer one), and a
-- tombstoned id takes no edit, however late (a deletion is final). Deletions lock the table
-- against this statement as against inserts (lock_message.sql). An id repeated within the batch
-- (redeliveries) is written at its highest version: ON CONFLICT may not touch a row twice.
INSERT INTO chat_messages (cache_id, owner_id, channel_id, username, content, created_at, stream_id, version, edited_at)
SELECT DISTINCT ON (t.cache_id) t.cache_id, t.owner_id, t.channel_id, t.username, t.content, t.created_at, t.stream_id, t.version, t.edited_at
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::bigint[], $9::timestamptz[])
    AS t (cache_id, owner_id, channel_id, username, content, created_at, stream_id, version, edited_at)
WHERE NOT EXISTS (
    SELECT 1 FROM deleted_messages d WHERE d.kind = 'message' AND d.cache_id = t.cache_id
)
ORDER BY t.cache_id, t.version DESC
ON CONFLICT (cache_id) DO UPDATE
SET username = EXCLUDED.username, content = EXCLUDED.content, version = EXCLUDED.version,
    edited_at = EXCLUDED.edited_at
WHERE chat_messages.version < EXCLUDED.version
