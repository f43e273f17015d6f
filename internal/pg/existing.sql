-- The stored rows of a batch's ids, to tell a redelivery (the same message) from an id given
-- twice (another message: a Valkey that lost its counter, a failover to a replica that missed
-- the last increments).
SELECT {{.Stored}}
FROM {{.Name}}
WHERE cache_id = ANY($1::bigint[])
