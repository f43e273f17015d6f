-- Channels: every public message belongs to one. A constant default adds the column without
-- rewriting the table (PostgreSQL 11+ keeps the default in the catalogue), so the lock it takes
-- is held for an instant however many rows there are; the rows from before channels are in the
-- default channel, "general" (a deployment that names its room otherwise renames them once, see
-- docs/api.md). Its index is migration 004, built without blocking writes.
ALTER TABLE chat_messages ADD COLUMN IF NOT EXISTS channel_id text NOT NULL DEFAULT 'general';
