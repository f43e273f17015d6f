DROP INDEX IF EXISTS private_messages_recipient_cache_id;
DROP INDEX IF EXISTS private_messages_owner_cache_id;
