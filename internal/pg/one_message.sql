-- One public message, whole: its owner and channel for a deletion that must name its channel,
-- and every field for an edit, which carries the whole new message.
SELECT cache_id, owner_id, '' AS recipient_id, channel_id, username, content, created_at,
       GREATEST(version, cache_id) AS version, edited_at
FROM chat_messages WHERE cache_id = $1
