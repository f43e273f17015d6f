-- one.lua: accept one message, the single-message endpoints' hot path (entry.lua is prepended).
-- It does what enqueue.lua does for a batch of one, in the same order and with the same
-- outcomes (TestBatchMatchesModel holds both to one model), with fewer calls and no per-batch
-- bookkeeping: issue 24 measured enqueue.lua at 28 µs of Valkey's CPU for one message, 22 of
-- them Lua around its 13 calls, where the bare reference's script takes 10.
--
-- Checks, in order: a known client_msg_id returns its first id; then the user's rate limit; then
-- the backlog cap. A message refused by the backlog cap costs no quota (the fixed window's INCR
-- is given back).
--
-- KEYS[1] rate settings hash  KEYS[2] id counter  KEYS[3] flush stream
-- KEYS[4] the user's fixed-window counter  KEYS[5] the user's GCRA state
-- KEYS[6] the stream's indexed-since key  KEYS[7] ring  KEYS[8] backlog index
-- KEYS[9], KEYS[10] the second ring and index (a private message between two users), or none
-- KEYS[#KEYS] the client_msg_id record, when ARGV[12] is "1"
-- ARGV[1..10] as enqueue.lua's  ARGV[11] the message's JSON  ARGV[12] "1": a client_msg_id
-- Returns 0, id (accepted); 1, id (retry of an accepted client_msg_id); 2, retry after ms (rate
-- limited); 3, 0 (backlog full) — enqueue.lua's reply for a batch of one.
local call = redis.call
local client
if ARGV[12] == '1' then
  client = KEYS[#KEYS]
  local prev = call('GET', client)
  if prev then
    if ARGV[8] == '1' then call('PEXPIRE', client, tonumber(ARGV[3]) * 1000) end
    return {1, tonumber(prev)}
  end
end

local v = call('HMGET', KEYS[1], 'limit', 'window_seconds', 'algorithm')
local limit = tonumber(v[1]) or tonumber(ARGV[4])
local window = tonumber(v[2]) or tonumber(ARGV[5])
local now -- µs, read (TIME) only when needed

local tat -- GCRA: the new theoretical arrival time, written once the message is accepted
if (v[3] or ARGV[6]) == 'gcra' then
  local period = window * 1000000
  local t = call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local base = tonumber(call('GET', KEYS[5]) or '0')
  if base < now then base = now end
  tat = base + period / limit
  local allow_at = tat - period
  if allow_at > now then return {2, math.ceil((allow_at - now) / 1000)} end
else
  local n = call('INCR', KEYS[4])
  if n == 1 then
    call('EXPIRE', KEYS[4], window)
  elseif n > limit then
    call('DECR', KEYS[4])
    local ttl = call('PTTL', KEYS[4])
    if ttl < 0 then
      -- A counter without expiry would block its user forever: give it its window back.
      call('PEXPIRE', KEYS[4], window * 1000)
      ttl = window * 1000
    end
    if ttl < 1 then ttl = 1 end
    return {2, ttl}
  end
end

if tonumber(ARGV[2]) - call('XLEN', KEYS[3]) < 1 then
  if not tat then call('DECR', KEYS[4]) end
  return {3, 0}
end
if tat then
  local ttl = math.ceil((tat - now) / 1000)
  if ttl < 1 then ttl = 1 end
  call('SET', KEYS[5], string.format('%.0f', tat), 'PX', ttl)
end

-- The id: the counter, floored by the clock with clock-floored ids (see enqueue.lua).
local n = call('INCR', KEYS[2])
if ARGV[9] == '1' then
  if not now then
    local t = call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  local floor = (math.floor(now / 1000) - 1735689600000) * 1024 -- entry.lua's id_floor
  if n < floor then
    n = floor
    call('SET', KEYS[2], string.format('%d', n))
  end
end
local id = string.format('%d', n)
local entry = '{"cache_id":' .. id .. ',"version":' .. id .. ',"data":' .. ARGV[11] .. '}' -- envelope
local sid = call('XADD', KEYS[3], '*', 'cache_id', id, 'kind', ARGV[7], 'payload', entry)
call('SET', KEYS[6], sid, 'NX')
local size, ttl = tonumber(ARGV[1]), tonumber(ARGV[10])
local last = #KEYS - 1 -- the last ring's index
if client then last = last - 1 end
for r = 7, last, 2 do
  call('ZADD', KEYS[r + 1], id, sid)
  if call('RPUSH', KEYS[r], entry) > size then call('LTRIM', KEYS[r], -size, -1) end
  if ttl > 0 then call('PEXPIRE', KEYS[r], ttl) end
end
if client then call('SET', client, id, 'NX', 'EX', tonumber(ARGV[3])) end
return {0, n}
