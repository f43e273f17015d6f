-- A page of a timeline's history beside a cache id $1 (below it, newest first, or above it,
-- oldest first), without the ids of $3 (deletions not yet applied), $2 rows at most;
-- keyset pagination, never OFFSET. A channel ($4) is one range scan of (channel_id, cache_id)
-- (migration 004). A user's private history ($4: sent and received) is two limited seeks, on
-- (owner_id, cache_id) and (recipient_id, cache_id) (migration 002), merged; UNION also folds a
-- self-DM, which both seeks find, into one row. Each row carries its message's reaction counts
-- (one primary-key look-up a row: the counts are kept, never counted here).
{{- define "seek"}}
SELECT {{.T.Read}}
FROM {{.T.Name}} LEFT JOIN {{.T.Counts}} USING (cache_id)
WHERE {{.Column}} = $4 AND cache_id {{.Op}} $1 AND cache_id <> ALL($3::bigint[])
ORDER BY cache_id {{.Order}}
{{- end}}
{{- if .T.Private}}
SELECT * FROM (
    ({{template "seek" .With "owner_id"}} LIMIT $2)
    UNION
    ({{template "seek" .With "recipient_id"}} LIMIT $2)
) AS page
ORDER BY cache_id {{.Order}}
LIMIT $2
{{- else}}{{template "seek" .With "channel_id"}}
LIMIT $2
{{- end}}
