-- zring.lua: add entries to a private ring of the partitioned layout (a sorted set on its user's
-- slot, scored by cache id), keeping one entry a message: the one of the highest version. So
-- adding an entry again repairs a ring, and a create's entry (or an older edit's) written late —
-- ingest's third round trip, the workers' repair — never replaces a newer edit's.
-- KEYS[1] the ring  ARGV[1] ring size  ARGV[2] idle TTL (ms; 0: never)
-- ARGV[3] "1" when a WAIT follows: the call then always writes, so that the WAIT covers an entry
--   that was already there (written by another connection, perhaps not yet replicated: a WAIT
--   after a call that wrote nothing waits for nothing)
-- ARGV[4..] cache id, ring entry, cache id, ring entry, …
local ring = KEYS[1]
local wrote = false

-- version is a ring entry's version: {"cache_id":N,"version":V,…}; N for one without.
local function version(entry, id)
  return tonumber(string.match(entry, '^{"cache_id":%d+,"version":(%d+),')) or tonumber(id)
end

for i = 4, #ARGV, 2 do
  local id, entry = ARGV[i], ARGV[i + 1]
  local have = redis.call('ZRANGEBYSCORE', ring, id, id)
  local keep = true
  for _, old in ipairs(have) do
    if old == entry or version(old, id) >= version(entry, id) then keep = false end
  end
  if keep then
    if #have > 0 then redis.call('ZREMRANGEBYSCORE', ring, id, id) end
    redis.call('ZADD', ring, id, entry)
    wrote = true
  end
end
if ARGV[3] == '1' and not wrote and #ARGV >= 5 then
  -- Write the first message's kept entry again (same score, same member): a removal and an add
  -- that replication carries, with the ring as it was.
  local id = ARGV[4]
  local have = redis.call('ZRANGEBYSCORE', ring, id, id)
  if #have > 0 then
    redis.call('ZREM', ring, have[1])
    redis.call('ZADD', ring, id, have[1])
  end
end
redis.call('ZREMRANGEBYRANK', ring, 0, -tonumber(ARGV[1]) - 1)
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('PEXPIRE', ring, ttl) end
return 0
