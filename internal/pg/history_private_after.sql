-- A page of a user's private history above a cache id, oldest first; see
-- history_private_before.sql.
SELECT * FROM (
    (SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
     FROM private_messages
     WHERE owner_id = $4 AND cache_id > $1 AND cache_id <> ALL($3::bigint[])
     ORDER BY cache_id ASC LIMIT $2)
    UNION
    (SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
     FROM private_messages
     WHERE recipient_id = $4 AND cache_id > $1 AND cache_id <> ALL($3::bigint[])
     ORDER BY cache_id ASC LIMIT $2)
) AS page
ORDER BY cache_id ASC
LIMIT $2
