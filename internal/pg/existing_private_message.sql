-- The stored rows of a batch's private-message ids; see existing_message.sql.
SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM private_messages
WHERE cache_id = ANY($1::bigint[])
