-- copy_lock_message.sql for private messages.
LOCK TABLE private_messages IN ROW EXCLUSIVE MODE
