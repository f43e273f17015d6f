DROP TABLE deleted_messages;
DROP TABLE private_messages;
DROP TABLE chat_messages;
