-- enqueue.lua: accept a batch of messages of one kind — one message or a thousand — in one
-- atomic step (common.lua, entry.lua and batch.lua are prepended). What is per batch is done once: the settings and the
-- backlog length are read once, the ids taken in one write, every user's rate limit read and
-- written once, every ring pushed and trimmed once. Each message is still judged on its own and
-- in order, with the checks in the order that keeps a retry idempotent and a rejection free: a
-- known client_msg_id returns its first id; then the user's rate limit; then the backlog cap.
--
-- KEYS[1] rate settings hash  KEYS[2] id counter  KEYS[3] flush stream
-- KEYS[4..] the batch's other keys, each once, named by their index from ARGV: first per user
--   the fixed-window counter with the GCRA state right after it, then per ring its key and per
--   client_msg_id its record
-- ARGV[1] ring size  ARGV[2] backlog cap  ARGV[3] client id TTL (s)
-- ARGV[4..6] default limit, window (s), algorithm  ARGV[7] entry kind
-- ARGV[8] "1" when a WAIT follows (a retry then writes, see below)
-- ARGV[9] "1" for clock-floored ids (see below)
-- ARGV[10] ring idle TTL (ms; 0: never)
-- ARGV[11] KEYS indexes, as one msgpack array: the number of users, the stream's indexed-since
--   key, then six per message: the index of its user's fixed-window counter; of its
--   client_msg_id record (false: none); of its first ring; of its second ring (false: none, or
--   the same as the first for a self-DM, which is stored once); of its timelines' backlog
--   indexes, likewise. One cmsgpack.unpack instead of six tonumber calls per message: a tonumber
--   of a string runs strtod twice, which was a twentieth of the script's instructions.
-- ARGV[12..] the messages' JSON, in order
-- Returns two values per message, in order: 0, id (accepted); 1, id (retry of an accepted
-- client_msg_id); 2, retry after ms (rate limited); 3, 0 (backlog full).
local ring_size, kind = tonumber(ARGV[1]), ARGV[7]
local client_ttl = tonumber(ARGV[3])
local limit, window, alg = settings(KEYS[1], ARGV[4], ARGV[5], ARGV[6])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local room = tonumber(ARGV[2]) - redis.call('XLEN', KEYS[3])

-- Ids: the counter is read once and written once. With clock-floored ids it is floored by the
-- server's clock, 1024 ids a millisecond since 2025-01-01: a replica promoted after missing the
-- last increments starts past every id the old primary gave (unless the old primary gave more
-- than 1024 a millisecond on average), and ids stay below 2^52 (where the partitioned layout's
-- ids begin) for about 139 years.
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[9] == '1' then
  local floor = id_floor(math.floor(now / 1000), 1024)
  if last < floor - 1 then last = floor - 1 end
end
local first = last

-- Every user's state in one read.
local state_keys = {}
local gcra = 0
if alg == 'gcra' then gcra = 1 end
local meta = cmsgpack.unpack(ARGV[11])
for u = 1, meta[1] do state_keys[u] = KEYS[2 + 2 * u + gcra] end
local states = {}
if #state_keys > 0 then states = redis.call('MGET', unpack(state_keys)) end

local call, format, tonumber = redis.call, string.format, tonumber
local rl = limits(limit, window, alg, now)
local check, take = rl.check, rl.take
local durable_retry = ARGV[8] == '1'
local limiters, rings, ring_order = {}, {}, {}
local out, n = {}, 0
local since, indexes = KEYS[meta[2]], new_indexes()
for i = 12, #ARGV do
  local m = 6 * (i - 12) + 3
  local u, c = meta[m], meta[m + 1]
  local prev
  if c then prev = known(KEYS[c], client_ttl, durable_retry) end
  local code, value = 0, 0
  if prev then
    code, value = 1, tonumber(prev)
  else
    local lim = limiters[u]
    if not lim then
      lim = rl.new(KEYS[u], KEYS[u + 1], states[(u - 2) / 2])
      limiters[u] = lim
    end
    local retry = check(lim)
    if retry > 0 then
      code, value = 2, retry
    elseif room < 1 then
      code = 3
    else
      take(lim)
      room = room - 1
      last = last + 1
      value = last
      local id = format('%d', last)
      local entry = envelope(id, ARGV[i])
      local x2 = meta[m + 5]
      add_message(KEYS[3], id, kind, entry, indexes, KEYS[meta[m + 4]], x2 and KEYS[x2])
      local r1, r2 = meta[m + 2], meta[m + 3]
      local ring = rings[r1]
      if not ring then ring = {}; rings[r1] = ring; ring_order[#ring_order + 1] = r1 end
      ring[#ring + 1] = entry
      if r2 and r2 ~= r1 then
        ring = rings[r2]
        if not ring then ring = {}; rings[r2] = ring; ring_order[#ring_order + 1] = r2 end
        ring[#ring + 1] = entry
      end
      if c then
        call('SET', KEYS[c], id, 'NX', 'EX', client_ttl)
      end
    end
  end
  out[n + 1] = code; out[n + 2] = value
  n = n + 2
end

if last > first then
  redis.call('SET', KEYS[2], string.format('%d', last))
end
for _, lim in pairs(limiters) do rl.commit(lim) end
write_indexes(indexes, since)
local ttl = tonumber(ARGV[10])
for _, r in ipairs(ring_order) do push_ring(KEYS[r], rings[r], ring_size, ttl) end
return out
