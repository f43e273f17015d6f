-- One message, whole: its owner and channel (or users) for a deletion that must name them, and
-- every field for an edit, which carries the whole new message.
SELECT {{.Read}}
FROM {{.Name}} LEFT JOIN {{.Counts}} USING (cache_id) WHERE cache_id = $1
