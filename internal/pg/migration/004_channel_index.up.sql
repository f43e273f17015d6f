-- chatpipe:no-transaction
-- A channel's history page is one range scan of this index. CONCURRENTLY builds it while
-- writes go on (it cannot run in a transaction, hence the line above: each statement runs on
-- its own). A build that failed half way leaves an INVALID index behind: it is dropped first.
DROP INDEX CONCURRENTLY IF EXISTS chat_messages_channel_cache_id;
CREATE INDEX CONCURRENTLY chat_messages_channel_cache_id ON chat_messages (channel_id, cache_id);
