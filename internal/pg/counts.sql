-- The reaction counts of some messages ($1), for entries read without them (from a ring or a
-- stream) while the hot copies in Valkey expire.
SELECT cache_id, reactions::text, reactions_version FROM {{.Counts}}
WHERE cache_id = ANY($1::bigint[]) AND reactions::text <> '[]'
