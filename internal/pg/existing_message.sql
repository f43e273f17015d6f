-- The stored rows of a batch's public-message ids, to tell a redelivery (the same message) from
-- an id given twice (another message: a Valkey that lost its counter, a failover to a replica
-- that missed the last increments).
SELECT cache_id, owner_id, '' AS recipient_id, channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM chat_messages
WHERE cache_id = ANY($1::bigint[])
