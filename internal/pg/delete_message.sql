DELETE FROM chat_messages WHERE cache_id = ANY($1::bigint[])
