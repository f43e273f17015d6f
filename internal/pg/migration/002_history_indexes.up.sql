-- Keyset pagination of a user's private history (ingest's history endpoints): the sent and the
-- received messages are two index seeks, (owner_id, cache_id) and (recipient_id, cache_id),
-- merged by a UNION of two limited scans. Public history pages by the primary key.
CREATE INDEX IF NOT EXISTS private_messages_owner_cache_id ON private_messages (owner_id, cache_id);
CREATE INDEX IF NOT EXISTS private_messages_recipient_cache_id ON private_messages (recipient_id, cache_id);
