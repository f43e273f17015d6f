ALTER TABLE chat_messages DROP COLUMN IF EXISTS channel_id;
