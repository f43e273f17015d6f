-- The tombstoned ids among a batch about to be copied; $1 is the kind.
SELECT cache_id FROM deleted_messages WHERE kind = $1 AND cache_id = ANY($2::bigint[])
