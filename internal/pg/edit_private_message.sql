-- Applies a batch of edits of private messages; see edit_message.sql.
INSERT INTO private_messages (cache_id, owner_id, recipient_id, username, content, created_at, stream_id, version, edited_at)
SELECT DISTINCT ON (t.cache_id) t.cache_id, t.owner_id, t.recipient_id, t.username, t.content, t.created_at, t.stream_id, t.version, t.edited_at
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::bigint[], $9::timestamptz[])
    AS t (cache_id, owner_id, recipient_id, username, content, created_at, stream_id, version, edited_at)
WHERE NOT EXISTS (
    SELECT 1 FROM deleted_messages d WHERE d.kind = 'private_message' AND d.cache_id = t.cache_id
)
ORDER BY t.cache_id, t.version DESC
ON CONFLICT (cache_id) DO UPDATE
SET username = EXCLUDED.username, content = EXCLUDED.content, version = EXCLUDED.version,
    edited_at = EXCLUDED.edited_at
WHERE private_messages.version < EXCLUDED.version
