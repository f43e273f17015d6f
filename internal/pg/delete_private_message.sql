-- Removes deleted private messages, naming their users so that the worker clears their rings.
DELETE FROM private_messages WHERE cache_id = ANY($1::bigint[])
RETURNING cache_id, owner_id, recipient_id
