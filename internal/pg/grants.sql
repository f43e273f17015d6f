-- The least a flush worker's role needs, once an owner role has run `flushworker migrate`
-- (run the workers with FLUSH_MIGRATE=false). Replace chatpipe_writer with the role's name.
--   SELECT on deleted_messages: the insert skips tombstoned ids.
--   SELECT on the message tables: DELETE … WHERE cache_id = ANY(…) reads cache_id.
--   DELETE on the message tables: deletions; it also allows the SHARE ROW EXCLUSIVE lock.
GRANT USAGE ON SCHEMA public TO chatpipe_writer;
GRANT SELECT, INSERT, DELETE ON chat_messages, private_messages TO chatpipe_writer;
GRANT SELECT, INSERT ON deleted_messages TO chatpipe_writer;
GRANT SELECT ON chatpipe_schema_migrations TO chatpipe_writer;
--   The reaction tables: the toggles and counts are upserts (INSERT … ON CONFLICT DO UPDATE),
--   and a deletion removes its message's.
GRANT SELECT, INSERT, UPDATE, DELETE ON chat_message_reactions, private_message_reactions,
    chat_message_reaction_counts, private_message_reaction_counts TO chatpipe_writer;

-- Ingest's read-only role for the history endpoints: grants_reader.sql.
