-- A page of channel $4's history above a cache id, oldest first; see history_message_before.sql.
SELECT cache_id, owner_id, '' AS recipient_id, channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM chat_messages
WHERE channel_id = $4 AND cache_id > $1 AND cache_id <> ALL($3::bigint[])
ORDER BY cache_id ASC
LIMIT $2
