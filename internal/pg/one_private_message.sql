-- The users of one private message, for its deletion from their rings.
SELECT owner_id, recipient_id, '' AS channel_id FROM private_messages WHERE cache_id = $1
