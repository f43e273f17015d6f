-- Applies a batch's reactions in one statement. Per message, emoji and user the toggle of the
-- highest version wins, and per message the counts of the highest version, whatever order the
-- batches commit in (two workers, a reclaim, a replay): a row keeps a higher version than a
-- toggle's, and a removal keeps its row (removed) so that an older add cannot bring it back.
-- A tombstoned id takes no reaction (a deletion is final; deletions lock these tables against
-- this statement as against inserts, lock.sql). A reaction needs no row of its message: the
-- counts are rows of their own.
WITH t AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::boolean[], $6::text[])
        AS t (cache_id, emoji, user_id, version, removed, reactions)
    WHERE NOT EXISTS (
        SELECT 1 FROM deleted_messages d WHERE d.kind = '{{.Kind}}' AND d.cache_id = t.cache_id
    )
), toggled AS (
    INSERT INTO {{.Reactions}} (cache_id, emoji, user_id, version, removed)
    SELECT DISTINCT ON (cache_id, emoji, user_id) cache_id, emoji, user_id, version, removed
    FROM t
    ORDER BY cache_id, emoji, user_id, version DESC
    ON CONFLICT (cache_id, emoji, user_id) DO UPDATE
    SET version = EXCLUDED.version, removed = EXCLUDED.removed, toggled_at = now()
    WHERE {{.Reactions}}.version < EXCLUDED.version
)
INSERT INTO {{.Counts}} (cache_id, reactions, reactions_version)
SELECT DISTINCT ON (cache_id) cache_id, reactions::json, version
FROM t
ORDER BY cache_id, version DESC
ON CONFLICT (cache_id) DO UPDATE
SET reactions = EXCLUDED.reactions, reactions_version = EXCLUDED.reactions_version
WHERE {{.Counts}}.reactions_version < EXCLUDED.reactions_version
