-- enqueue.lua: accept messages of one kind — one message or a thousand — in one atomic step on
-- the slot of their flush stream, in either layout (common.lua, entry.lua and batch.lua are
-- prepended). The keys arrive once each and are named by their place in KEYS (ARGV[11]); the
-- layout decides which are there (docs/store.md): in the single layout the users' rate limits
-- and the private rings share this slot and are written here; in the partitioned layout the
-- limit was taken before, on each user's slot, and the private rings are written after.
--
-- Two passes. The first judges each message on its own and in order, with the checks in the
-- order that keeps a retry idempotent and a rejection free: a known client_msg_id returns its
-- first id; then the user's rate limit (where this call holds it); then the backlog cap. The
-- second takes the accepted messages' ids in one write and writes them: entries, backlog
-- indexes, rings. What is per batch is done once — the settings and the backlog length read,
-- the ids taken, each user's limit and each ring written — so a batch of one makes no call a
-- single message does not need (no TIME unless an id or the limit needs the clock).
--
-- KEYS[1] id counter (the single layout's, or the partition's sequence)  KEYS[2] flush stream
-- KEYS[3] the stream's indexed-since key  KEYS[4..] the others, each once
-- ARGV[1] ring size  ARGV[2] backlog cap  ARGV[3] client id TTL (s)
-- ARGV[4..6] default limit, window (s), algorithm  ARGV[7] entry kind
-- ARGV[8] "1" when a WAIT follows (a retry then writes, see known)
-- ARGV[9] ids: "counter", "clock" (clock-floored) or the partition's number
-- ARGV[10] ring idle TTL (ms; 0: never)
-- ARGV[11] KEYS indexes, one msgpack array: the rate settings hash (false: the limit was taken
--   before), then six per message: its user's fixed-window counter, with the GCRA state right
--   after it (false: no limit here); its client_msg_id record (false: none); its first and
--   second ring (false: none; a self-DM's one ring twice is pushed once); its timelines' backlog
--   indexes, likewise. One cmsgpack.unpack instead of six tonumber calls a message.
-- ARGV[12..] the messages' JSON, in order
-- Returns two values per message, in order: 0, id (accepted); 1, id (retry of an accepted
-- client_msg_id); 2, retry after ms (rate limited); 3, 0 (backlog full).
--
-- Ids. counter: 1, 2, 3, … as the list-based cache gave them. clock: the counter floored by the
-- server's clock, 1024 ids a millisecond since 2025-01-01, so that a replica promoted after
-- missing the last increments starts past every id the old primary gave (unless it gave more
-- than 1024 a millisecond on average); below 2^52 for about 139 years. A partition's: n =
-- max(last n + 1, 16 a millisecond since 2025-01-01) and id = 2^52 + n * 64 + partition: unique
-- across partitions, rising within one, above every id of the single layout (both can meet in
-- one table while producers switch over).
local call, format, tonumber = redis.call, string.format, tonumber
local ring_size, client_ttl, kind = tonumber(ARGV[1]), tonumber(ARGV[3]), ARGV[7]
local durable, ids = ARGV[8] == '1', ARGV[9]
local count = #ARGV - 11
local now -- µs, read once when needed

-- take_ids takes a ids in one write and returns the first's sequence value and the partition
-- (nil for the single layout's counter).
local function take_ids(a)
  local last = call('INCRBY', KEYS[1], a)
  local part
  if ids ~= 'counter' then
    local per_ms = 1024
    if ids ~= 'clock' then part, per_ms = tonumber(ids), 16 end
    local floor = id_floor(math.floor((now or now_us()) / 1000), per_ms)
    if last - a + 1 < floor then
      last = floor + a - 1
      call('SET', KEYS[1], format('%d', last))
    end
  end
  return last - a + 1, part
end

-- id_of is the id of sequence value n.
local function id_of(n, part)
  if part then return partition_id(n, part) end
  return format('%d', n)
end

-- A batch of one, the single-message endpoints' path: the same checks and writes in the same
-- order, straight, without the batch's bookkeeping (which costs Lua more than its calls).
if count == 1 then
  -- Its seven indexes without unpacking: below 128 each is one msgpack byte, false is 0xc2.
  local set, u, c, r1, r2, x1, x2 = string.byte(ARGV[11], 2, 8)
  local none = 0xc2
  if c ~= none then
    local prev = known(KEYS[c], client_ttl, durable)
    if prev then return {1, tonumber(prev)} end
  end
  local lim
  if set ~= none then
    local limit, window, alg = settings(KEYS[set], ARGV[4], ARGV[5], ARGV[6])
    local state = false
    if alg == 'gcra' then now, state = now_us(), call('GET', KEYS[u + 1]) end
    lim = rl_new(alg, limit, window, now, KEYS[u], KEYS[u + 1], state, 1)
    local retry = rl_check(lim)
    if retry > 0 then rl_commit(lim); return {2, retry} end
  end
  if tonumber(ARGV[2]) - call('XLEN', KEYS[2]) < 1 then
    if lim then rl_commit(lim) end
    return {3, 0}
  end
  if lim then rl_take(lim); rl_commit(lim) end
  local id = id_of(take_ids(1))
  local entry = envelope(id, ARGV[12])
  local sid = add_entry(KEYS[2], id, kind, entry)
  local ttl = tonumber(ARGV[10])
  if r1 ~= none then push_ring(KEYS[r1], {entry}, ring_size, ttl) end
  if r2 ~= none and r2 ~= r1 then push_ring(KEYS[r2], {entry}, ring_size, ttl) end
  if x1 ~= none then call('ZADD', KEYS[x1], id, sid); call('SET', KEYS[3], sid, 'NX') end
  if x2 ~= none and x2 ~= x1 then call('ZADD', KEYS[x2], id, sid) end
  if c ~= none then call('SET', KEYS[c], id, 'NX', 'EX', client_ttl) end
  return {0, tonumber(id)}
end

local meta = cmsgpack.unpack(ARGV[11])
-- The rate limit, where this call holds it: each user's limiter made at its first message.
local limit, window, alg
local per_user, states, limiters = {}, {}, {}
if meta[1] then
  limit, window, alg = settings(KEYS[meta[1]], ARGV[4], ARGV[5], ARGV[6])
  local gcra = {}
  for i = 1, count do
    local u = meta[6 * i - 4]
    if u then
      local n = per_user[u]
      if not n then n = 0; gcra[#gcra + 1] = u end
      per_user[u] = n + 1
    end
  end
  if alg == 'gcra' then
    now = now_us()
    local keys = {}
    for j, u in ipairs(gcra) do keys[j] = KEYS[u + 1] end
    local v = call('MGET', unpack(keys))
    for j, u in ipairs(gcra) do states[u] = v[j] end
  end
end

-- Pass 1: judge.
local out, accepted = {}, {}
local first_of = {} -- client_msg_id record → the batch's first message with it
local room = tonumber(ARGV[2]) - call('XLEN', KEYS[2])
for i = 1, count do
  local m = 6 * i - 4
  local u, c = meta[m], meta[m + 1]
  local code, value = 0, 0
  if c then
    if first_of[c] then
      code, value = 1, -first_of[c] -- its id is taken in pass 2
    else
      local prev = known(KEYS[c], client_ttl, durable)
      if prev then code, value = 1, tonumber(prev) end
    end
  end
  if code == 0 then
    local lim = u and limiters[u]
    if u and not lim then
      lim = rl_new(alg, limit, window, now, KEYS[u], KEYS[u + 1], states[u], per_user[u])
      limiters[u] = lim
    end
    local retry = 0
    if lim then retry = rl_check(lim) end
    if retry > 0 then
      code, value = 2, retry
    elseif room < 1 then
      code = 3
    else
      if lim then rl_take(lim) end
      room = room - 1
      accepted[#accepted + 1] = i
      if c then first_of[c] = i end
    end
  end
  out[2 * i - 1], out[2 * i] = code, value
end
for _, lim in pairs(limiters) do rl_commit(lim) end

-- Pass 2: the ids, in one write, and the writes.
local a = #accepted
if a == 0 then return out end
local n, part = take_ids(a)
n = n - 1
local indexes, rings, ring_order = new_indexes(), {}, {}
for j = 1, a do
  local i = accepted[j]
  n = n + 1
  -- The id as a number for the reply and as exact digits for the entries (a partition's ids are
  -- above 2^52: format, not tostring, writes them whole).
  local value = n
  if part then value = partition_value(n, part) end
  local id = format('%d', value)
  local m = 6 * i - 4
  local entry = envelope(id, ARGV[11 + i])
  local x2 = meta[m + 5]
  add_message(KEYS[2], id, kind, entry, indexes, KEYS[meta[m + 4]], x2 and KEYS[x2])
  local r1, r2 = meta[m + 2], meta[m + 3]
  if r1 then
    local ring = rings[r1]
    if not ring then ring = {}; rings[r1] = ring; ring_order[#ring_order + 1] = r1 end
    ring[#ring + 1] = entry
  end
  if r2 and r2 ~= r1 then
    local ring = rings[r2]
    if not ring then ring = {}; rings[r2] = ring; ring_order[#ring_order + 1] = r2 end
    ring[#ring + 1] = entry
  end
  local c = meta[m + 1]
  if c then call('SET', KEYS[c], id, 'NX', 'EX', client_ttl) end
  out[2 * i] = value
end
for i = 2, 2 * count, 2 do
  if out[i] < 0 then out[i] = out[-2 * out[i]] end -- a repeat of a client_msg_id in the batch
end
write_indexes(indexes, KEYS[3])
local ttl = tonumber(ARGV[10])
for _, r in ipairs(ring_order) do push_ring(KEYS[r], rings[r], ring_size, ttl) end
return out
