-- Who reacted with one emoji ($2) on a message ($1), oldest first, after the version $3, $4 at
-- most.
SELECT user_id, version FROM {{.Reactions}}
WHERE cache_id = $1 AND emoji = $2 AND version > $3 AND NOT removed
ORDER BY version
LIMIT $4
