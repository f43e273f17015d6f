-- backlog.lua: read a flush stream's messages by cache id, for history.
-- KEYS[1] flush stream  KEYS[2] the kind's pending deletions (sorted set)
-- ARGV[1] 'b' (ids below the cursor, newest first) or 'f' (ids above it, oldest first)
-- ARGV[2] cursor: a cache id, exclusive; '' in 'b' reads from the newest
-- ARGV[3] where an earlier call stopped (a stream id, exclusive), '' to find the cursor
-- ARGV[4] the most entries to scan  ARGV[5] '1' to return the pending deletions
-- Returns {first, next, pending, entries}: first is {stream id, cache id} of the stream's oldest
-- message ({} when it holds none); next is where to go on ('' when the scan reached the stream's
-- end); pending the pending deletions' cache ids; entries stream id, cache id, fields, … of the
-- messages in range (deletions and edits are skipped), in scan order, fields as XRANGE gives them: every
-- field of the entry, so that a field added to entries reaches the read side without a change
-- here.
--
-- Within one stream ids rise with stream ids (both are taken in one script), so the cursor is
-- found by a binary search on stream time: O(log) reads, however long the backlog.
local key, dir, cursor, resume, max = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])

local function fields(e)
  local f = e[2]
  local m = {}
  for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  return m
end

-- is_message says whether an entry is a message's create. Deletions, edits and reactions carry the ids of
-- earlier messages, out of the stream's order, and are not read here: the pending deletions
-- come from their set, edits from the backlog indexes (indexed.lua), reactions from their hashes.
local function is_message(m)
  local k = m['kind']
  return k ~= 'delete' and k ~= 'edit' and k ~= 'reaction'
end

-- first_message returns the id, cache id (a number) and cache id as written (exact: a Lua number
-- would print 2^52 and more in exponent form) of the first message entry at or after start.
local function first_message(start)
  for _ = 1, 64 do
    local es = redis.call('XRANGE', key, start, '+', 'COUNT', 16)
    if #es == 0 then return nil end
    for _, e in ipairs(es) do
      local m = fields(e)
      if is_message(m) then return e[1], tonumber(m['cache_id']) or 0, m['cache_id'] or '0' end
    end
    start = '(' .. es[#es][1]
  end
  return nil
end

local function ms_of(id) return tonumber(string.match(id, '^(%d+)-')) end

local out_first = {}
local fid, _, fcid = first_message('-')
if fid then out_first = {fid, fcid} end

local pending = {}
if ARGV[5] == '1' then pending = redis.call('ZRANGE', KEYS[2], 0, -1) end

-- Where the scan starts (a range bound for XRANGE / XREVRANGE).
local from
if resume ~= '' then
  from = '(' .. resume
elseif dir == 'b' and cursor == nil then
  from = '+'
elseif dir == 'f' and (cursor == nil or cursor < 1) then
  from = '-'
else
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
  if not fid or not last then return {out_first, '', pending, {}} end
  -- The smallest ms m at which the first message at or after m-0 reaches the cursor
  -- (>= for 'b', > for 'f'); hi means none does.
  local lo, hi = ms_of(fid), ms_of(last[1]) + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local _, c = first_message(mid .. '-0')
    -- No message at or after mid (only deletions, at the stream's end) reaches it too.
    if c == nil or (dir == 'b' and c >= cursor) or (dir == 'f' and c > cursor) then
      hi = mid
    else
      lo = mid + 1
    end
  end
  if dir == 'b' then
    from = '(' .. lo .. '-0'
  elseif lo - 1 > ms_of(fid) then
    from = (lo - 1) .. '-0'
  else
    from = '-'
  end
end

local es
if dir == 'b' then
  es = redis.call('XREVRANGE', key, from, '-', 'COUNT', max)
else
  es = redis.call('XRANGE', key, from, '+', 'COUNT', max)
end
local entries = {}
for _, e in ipairs(es) do
  local m = fields(e)
  local c = tonumber(m['cache_id'])
  if is_message(m) and c ~= nil and (cursor == nil or (dir == 'b' and c < cursor) or (dir == 'f' and c > cursor)) then
    entries[#entries + 1] = e[1]
    entries[#entries + 1] = m['cache_id']
    entries[#entries + 1] = e[2]
  end
end
local nxt = ''
if #es == max then nxt = es[#es][1] end
return {out_first, nxt, pending, entries}
