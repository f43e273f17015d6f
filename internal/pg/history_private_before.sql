-- A page of a user's private history ($4: sent and received) below a cache id, newest first,
-- without the ids of $3: two limited seeks, on (owner_id, cache_id) and (recipient_id, cache_id)
-- (migration 002), merged. UNION also folds a self-DM, which both seeks find, into one row.
SELECT * FROM (
    (SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
     FROM private_messages
     WHERE owner_id = $4 AND cache_id < $1 AND cache_id <> ALL($3::bigint[])
     ORDER BY cache_id DESC LIMIT $2)
    UNION
    (SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
     FROM private_messages
     WHERE recipient_id = $4 AND cache_id < $1 AND cache_id <> ALL($3::bigint[])
     ORDER BY cache_id DESC LIMIT $2)
) AS page
ORDER BY cache_id DESC
LIMIT $2
