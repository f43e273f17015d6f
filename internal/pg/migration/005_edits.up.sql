-- Edits: a message's version and the time of its latest edit. Constant defaults add the columns
-- without rewriting the tables. version 0 means never edited: the version is then the cache id
-- (edits take their versions from the id sequence, so an edit's is always above its message's
-- id); readers give GREATEST(version, cache_id).
ALTER TABLE chat_messages
    ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS edited_at timestamptz;
ALTER TABLE private_messages
    ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS edited_at timestamptz;
