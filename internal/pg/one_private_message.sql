-- One private message, whole: its users for its deletion from their rings, and every field for
-- an edit.
SELECT cache_id, owner_id, recipient_id, '' AS channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM private_messages WHERE cache_id = $1
