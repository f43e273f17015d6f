-- The emoji a viewer ($2) has on each of a page's messages ($1), for history's "me".
SELECT cache_id, emoji FROM {{.Reactions}}
WHERE cache_id = ANY($1::bigint[]) AND user_id = $2 AND NOT removed
