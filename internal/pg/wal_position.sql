-- The primary's WAL insert position, in bytes: every transaction that committed before this
-- query is at or below it (insert, not write: asynchronous commits are counted too).
SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint
