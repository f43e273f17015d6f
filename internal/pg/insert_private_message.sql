-- Private messages: as insert_message.sql.
INSERT INTO private_messages (cache_id, owner_id, recipient_id, username, content, created_at, stream_id)
SELECT t.cache_id, t.owner_id, t.recipient_id, t.username, t.content, t.created_at, t.stream_id
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::text[])
    AS t (cache_id, owner_id, recipient_id, username, content, created_at, stream_id)
WHERE NOT EXISTS (
    SELECT 1 FROM deleted_messages d WHERE d.kind = 'private_message' AND d.cache_id = t.cache_id
)
ON CONFLICT (cache_id) DO NOTHING
