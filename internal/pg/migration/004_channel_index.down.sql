DROP INDEX CONCURRENTLY IF EXISTS chat_messages_channel_cache_id;
