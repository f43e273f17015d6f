-- Applies a batch of edits in one statement. An edit carries the whole new message, so an edit
-- that arrives before its message's insert (another worker, either commit order) writes the
-- row, and the insert then finds it and writes nothing. A stored row keeps a higher version
-- than the edit's (an older edit never overwrites a newer one), and a tombstoned id takes no
-- edit, however late (a deletion is final). Deletions lock the table against this statement as
-- against inserts (lock.sql). An id repeated within the batch (redeliveries) is written at its
-- highest version: ON CONFLICT may not touch a row twice.
INSERT INTO {{.Name}} ({{cols .Edit ""}})
SELECT DISTINCT ON (t.cache_id) {{cols .Edit "t."}}
FROM unnest({{unnest .Edit}})
    AS t ({{cols .Edit ""}})
WHERE NOT EXISTS (
    SELECT 1 FROM deleted_messages d WHERE d.kind = '{{.Kind}}' AND d.cache_id = t.cache_id
)
ORDER BY t.cache_id, t.version DESC
ON CONFLICT (cache_id) DO UPDATE
SET username = EXCLUDED.username, content = EXCLUDED.content, version = EXCLUDED.version,
    edited_at = EXCLUDED.edited_at
WHERE {{.Name}}.version < EXCLUDED.version
