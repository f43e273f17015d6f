-- As lock_message.sql, for private messages.
LOCK TABLE private_messages IN SHARE ROW EXCLUSIVE MODE
