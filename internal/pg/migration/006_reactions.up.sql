-- Reactions. Per kind of message, who reacted with what (one row per message, emoji and user,
-- at the version of its latest toggle; a reaction taken back keeps its row with removed = true,
-- so that an older toggle delivered late, by another worker or a reclaim, cannot bring it back),
-- and each message's counts as its reaction entries carry them (the emoji in first-added order),
-- at their version. The counts are a row of their own, not columns of the message's: a
-- reaction's batch may commit before its message's (another worker), and must not wait for it.
-- History reads a page's counts with the page (one join), never by counting rows.
CREATE TABLE IF NOT EXISTS chat_message_reactions (
    cache_id bigint NOT NULL,
    emoji text NOT NULL CHECK (octet_length(emoji) BETWEEN 1 AND 64),
    user_id text NOT NULL CHECK (octet_length(user_id) BETWEEN 1 AND 128),
    version bigint NOT NULL,
    removed boolean NOT NULL DEFAULT false,
    toggled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cache_id, emoji, user_id)
);
CREATE TABLE IF NOT EXISTS private_message_reactions (LIKE chat_message_reactions INCLUDING ALL);
CREATE TABLE IF NOT EXISTS chat_message_reaction_counts (
    cache_id bigint PRIMARY KEY,
    reactions json NOT NULL,
    reactions_version bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS private_message_reaction_counts (LIKE chat_message_reaction_counts INCLUDING ALL);
