-- part_enqueue.lua: accept messages of one kind in the partitioned layout, on their partition's
-- slot, all of one partition's messages of a batch in one call (entry.lua and batch.lua are
-- prepended): the
-- backlog length and the sequence are read once and written once, the ring shard pushed and
-- trimmed once. The rate limit was taken before, on each user's slot (part_ratelimit.lua).
-- KEYS[1] partition sequence  KEYS[2] flush stream  KEYS[3] public ring shard, or the stream
--   again for private messages (whose rings are on their users' slots)
-- KEYS[4..] client_msg_id records and backlog indexes, each once, and the indexed-since key
-- ARGV[1] ring size  ARGV[2] backlog cap  ARGV[3] client id TTL (s)  ARGV[4] entry kind
-- ARGV[5] partition  ARGV[6] "1" when a WAIT follows (a retry then writes, so that the WAIT
--   covers the first write)
-- ARGV[7] KEYS indexes, as a msgpack array: the indexed-since key's, then three per message: its
--   client_msg_id record's (false: none) and its timelines' backlog indexes' (the second false
--   for a public message or a self-DM)
-- ARGV[8] ring idle TTL (ms; 0: never)
-- ARGV[9..] the messages' JSON, in order
-- Returns two values per message, in order: 0, id (accepted); 1, id (retry of an accepted
-- client_msg_id); 3, 0 (backlog full).
--
-- Ids: n = max(last n + 1, (now_ms - 2025-01-01) * 16) and id = 2^52 + n * 64 + partition.
-- Unique across partitions (id % 64 is the partition), rising within a partition, in [2^52,
-- 2^53) for about 139 years — above every id of the single layout, counter or clock, so both
-- can meet in one table while producers switch over — and a promoted replica that missed the
-- last increments starts past them from its clock floor (unless it gave more than 16 ids a
-- millisecond on average).
local ring_size, client_ttl, kind, part = tonumber(ARGV[1]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[2])
local t = redis.call('TIME')
local floor = id_floor(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), 16)
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < floor - 1 then n = floor - 1 end
local first = n
local ring, out = {}, {}
local meta = cmsgpack.unpack(ARGV[7])
local since, indexes = KEYS[meta[1]], new_indexes()
for i = 9, #ARGV do
  local m = 3 * (i - 9) + 2
  local c = meta[m]
  local prev
  if c then prev = known(KEYS[c], client_ttl, ARGV[6] == '1') end
  if prev then
    out[#out + 1] = 1; out[#out + 1] = tonumber(prev)
  elseif room < 1 then
    out[#out + 1] = 3; out[#out + 1] = 0
  else
    room = room - 1
    n = n + 1
    local id = partition_id(n, part)
    local entry = envelope(id, ARGV[i])
    local x2 = meta[m + 2]
    add_message(KEYS[2], id, kind, entry, indexes, KEYS[meta[m + 1]], x2 and KEYS[x2])
    ring[#ring + 1] = entry
    if c then
      redis.call('SET', KEYS[c], id, 'NX', 'EX', client_ttl)
    end
    out[#out + 1] = 0; out[#out + 1] = tonumber(id)
  end
end
if n > first then redis.call('SET', KEYS[1], string.format('%d', n)) end
write_indexes(indexes, since)
if KEYS[3] ~= KEYS[2] and #ring > 0 then push_ring(KEYS[3], ring, ring_size, tonumber(ARGV[8])) end
return out
