DELETE FROM private_messages WHERE cache_id = ANY($1::bigint[])
