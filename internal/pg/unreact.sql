-- Removes the reactions of deleted messages, in the deletion's transaction (after lock.sql).
WITH r AS (DELETE FROM {{.Reactions}} WHERE cache_id = ANY($1::bigint[]))
DELETE FROM {{.Counts}} WHERE cache_id = ANY($1::bigint[])
