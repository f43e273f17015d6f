-- Messages as the flush workers write them: one row per cache id, written idempotently.
-- The CHECK constraints repeat ingest's validation, so that an entry that reached a stream by
-- another road (a legacy list, a hand-written XADD) is rejected as data (class 23) and
-- dead-lettered, never stored out of shape.
CREATE TABLE chat_messages (
    cache_id     bigint      PRIMARY KEY CHECK (cache_id > 0),
    owner_id     text        NOT NULL CHECK (octet_length(owner_id) BETWEEN 1 AND 128),
    username     text        NOT NULL CHECK (octet_length(username) <= 64),
    content      text        NOT NULL CHECK (octet_length(content) BETWEEN 1 AND 4096),
    created_at   timestamptz NOT NULL,
    stream_id    text        NOT NULL,
    persisted_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE private_messages (
    cache_id     bigint      PRIMARY KEY CHECK (cache_id > 0),
    owner_id     text        NOT NULL CHECK (octet_length(owner_id) BETWEEN 1 AND 128),
    recipient_id text        NOT NULL CHECK (octet_length(recipient_id) BETWEEN 1 AND 128),
    username     text        NOT NULL CHECK (octet_length(username) <= 64),
    content      text        NOT NULL CHECK (octet_length(content) BETWEEN 1 AND 4096),
    created_at   timestamptz NOT NULL,
    stream_id    text        NOT NULL,
    persisted_at timestamptz NOT NULL DEFAULT now()
);

-- Tombstones: a deletion is remembered, so that a message whose insert arrives after its
-- deletion (another replica, a redelivery) is never written (invariant 3).
CREATE TABLE deleted_messages (
    kind       text        NOT NULL CHECK (kind IN ('message', 'private_message')),
    cache_id   bigint      NOT NULL,
    stream_id  text        NOT NULL,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, cache_id)
);
