DROP TABLE IF EXISTS chat_message_reactions, private_message_reactions,
    chat_message_reaction_counts, private_message_reaction_counts;
