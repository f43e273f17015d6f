-- A page of public history below a cache id, newest first, without the ids of $3 (deletions not
-- yet applied). Keyset pagination on the primary key, never OFFSET.
SELECT cache_id, owner_id, '' AS recipient_id, username, content, created_at
FROM chat_messages
WHERE cache_id < $1 AND cache_id <> ALL($3::bigint[])
ORDER BY cache_id DESC
LIMIT $2
