-- Removes deleted messages; of private messages it names their users, so that the worker clears
-- their rings.
DELETE FROM {{.Name}} WHERE cache_id = ANY($1::bigint[])
{{- if .Private}}
RETURNING cache_id, owner_id, recipient_id
{{- end}}
