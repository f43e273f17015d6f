-- One message's reactions as PostgreSQL holds them, for a reaction to a message whose
-- reactions are no longer hot in Valkey: its counts and their version, and the emoji the
-- reacting user ($2) has on it, with the version of each.
SELECT COALESCE((SELECT reactions::text FROM {{.Counts}} WHERE cache_id = $1), '[]'),
       COALESCE((SELECT reactions_version FROM {{.Counts}} WHERE cache_id = $1), 0),
       ARRAY(SELECT emoji FROM {{.Reactions}} WHERE cache_id = $1 AND user_id = $2 AND NOT removed ORDER BY version),
       ARRAY(SELECT version FROM {{.Reactions}} WHERE cache_id = $1 AND user_id = $2 AND NOT removed ORDER BY version)
