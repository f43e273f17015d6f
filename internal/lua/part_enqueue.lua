-- part_enqueue.lua: accept one message in the partitioned layout, on its partition's slot.
-- KEYS[1] client_msg_id record  KEYS[2] partition sequence  KEYS[3] flush stream
-- KEYS[4] public ring shard (public messages only)
-- ARGV[1] message JSON  ARGV[2] ring size  ARGV[3] backlog cap  ARGV[4] client id TTL (s)
-- ARGV[5] "1" when a client_msg_id is given  ARGV[6] entry kind  ARGV[7] partition
-- ARGV[8] "1" when a WAIT follows (a retry then writes, so that the WAIT covers the first write)
-- Returns {0, id, stream id} accepted, {1, id} retry of an accepted message, {3} backlog full.
--
-- Ids: n = max(last n + 1, (now_ms - 2025-01-01) * 16) and id = 2^52 + n * 64 + partition.
-- Unique across partitions (id % 64 is the partition), rising within a partition, in [2^52,
-- 2^53) for about 139 years — above every id of the single layout, counter or clock, so both
-- can meet in one table while producers switch over — and a promoted replica that missed the
-- last increments starts past them from its clock floor (unless it gave more than 16 ids a
-- millisecond on average).
if ARGV[5] == '1' then
  local prev = redis.call('GET', KEYS[1])
  if prev then
    if ARGV[8] == '1' then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]) * 1000) end
    return {1, tonumber(prev)}
  end
end
if redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[3]) then return {3} end
local t = redis.call('TIME')
local floor = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - 1735689600000) * 16
local n = redis.call('INCR', KEYS[2])
if n < floor then
  n = floor
  redis.call('SET', KEYS[2], string.format('%d', n))
end
local id = string.format('%d', 4503599627370496 + n * 64 + tonumber(ARGV[7]))
local entry = '{"cache_id":' .. id .. ',"data":' .. ARGV[1] .. '}'
if #KEYS >= 4 then
  redis.call('RPUSH', KEYS[4], entry)
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[2]), -1)
end
local sid = redis.call('XADD', KEYS[3], '*', 'cache_id', id, 'kind', ARGV[6], 'payload', entry)
if ARGV[5] == '1' then
  redis.call('SET', KEYS[1], id, 'NX', 'EX', tonumber(ARGV[4]))
end
return {0, tonumber(id), sid}
