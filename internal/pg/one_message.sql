-- Who and where one public message is: its owner and channel, for a deletion that must name its
-- channel.
SELECT owner_id, '' AS recipient_id, channel_id FROM chat_messages WHERE cache_id = $1
