-- A page of channel $4's history below a cache id, newest first, without the ids of $3
-- (deletions not yet applied): one range scan of (channel_id, cache_id) (migration 004), keyset
-- pagination, never OFFSET.
SELECT cache_id, owner_id, '' AS recipient_id, channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM chat_messages
WHERE channel_id = $4 AND cache_id < $1 AND cache_id <> ALL($3::bigint[])
ORDER BY cache_id DESC
LIMIT $2
