-- How far the $1 most advanced streaming standbys have replayed the primary's WAL: how many
-- report a replay position (at most $1), the lowest of their positions in bytes, and the
-- largest of their replay lags (the time from a commit to its replay, apply delay included;
-- NULL once a standby is idle and caught up).
SELECT count(*)::int,
       coalesce(min(lsn), 0)::bigint,
       coalesce(extract(epoch FROM max(lag)), 0)::float8
FROM (
  SELECT (replay_lsn - '0/0'::pg_lsn)::bigint AS lsn, replay_lag AS lag
  FROM pg_stat_replication
  WHERE replay_lsn IS NOT NULL
  ORDER BY replay_lsn DESC
  LIMIT $1
) s
