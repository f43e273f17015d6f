-- The least ingest's role needs for the history endpoints (ingest with DATABASE_URL): it only
-- reads. Replace chatpipe_reader with the role's name.
--   SELECT on the message tables: history pages, and the users of a private message to delete.
GRANT USAGE ON SCHEMA public TO chatpipe_reader;
GRANT SELECT ON chat_messages, private_messages TO chatpipe_reader;
--   SELECT on the reaction tables: the counts on history's pages, who reacted, a viewer's own.
GRANT SELECT ON chat_message_reactions, private_message_reactions,
    chat_message_reaction_counts, private_message_reaction_counts TO chatpipe_reader;
