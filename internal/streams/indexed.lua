-- indexed.lua: read a flush stream's entries of one timeline, named by its backlog index (a
-- sorted set beside the stream: score the cache id, member the stream id), instead of scanning
-- the whole stream; for history.
-- KEYS[1] flush stream  KEYS[2] pending deletions (sorted set)  KEYS[3] the timeline's backlog
--   index  KEYS[4] the stream's indexed-since key (the stream id of its first indexed entry)
-- ARGV[1] 'b' (ids below the cursor, newest first) or 'f' (ids above it, oldest first)
-- ARGV[2] cursor: a cache id, exclusive; '' in 'b' reads from the newest
-- ARGV[3] the most entries to return  ARGV[4] '1' to return the pending deletions
-- Returns {first, unindexed, pending, entries}: first is the stream's oldest entry id ('' when
-- empty); unindexed is 1 when the stream holds entries from before its indexes (older than the
-- indexed-since id, or no index written yet), which the caller then scans for, and the entries
-- are not read; pending the pending deletions' cache ids; entries stream id, cache id, fields,
-- … of the timeline's messages in range, in read order.
--
-- A member whose entry is gone was trimmed, so acked, so in PostgreSQL: it is removed here (the
-- workers remove what they flush; this catches what they could not, such as entries they could
-- not decode).
local stream, ix, dir, cursor, want = KEYS[1], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3])

local function older(a, b) -- stream ids a < b
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end

local first = ''
local head = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
if head then first = head[1] end
local pending = {}
if ARGV[4] == '1' then pending = redis.call('ZRANGE', KEYS[2], 0, -1) end
local since = redis.call('GET', KEYS[4])
if head and (not since or older(first, since)) then
  return {first, 1, pending, {}}
end

local entries, found = {}, 0
local bound
if dir == 'b' then
  bound = '+inf'
  if cursor ~= '' then bound = '(' .. cursor end
else
  bound = '(' .. cursor
end
while found < want do
  local asked = want - found
  local members
  if dir == 'b' then
    members = redis.call('ZREVRANGEBYSCORE', ix, bound, '-inf', 'WITHSCORES', 'LIMIT', 0, asked)
  else
    members = redis.call('ZRANGEBYSCORE', ix, bound, '+inf', 'WITHSCORES', 'LIMIT', 0, asked)
  end
  if #members == 0 then break end
  for i = 1, #members, 2 do
    local sid = members[i]
    local e = redis.call('XRANGE', stream, sid, sid)[1]
    if e then
      local f, id = e[2], nil
      for j = 1, #f, 2 do
        if f[j] == 'cache_id' then id = f[j + 1] end
      end
      entries[#entries + 1] = sid
      entries[#entries + 1] = id or ''
      entries[#entries + 1] = f
      found = found + 1
    else
      redis.call('ZREM', ix, sid)
    end
  end
  -- Scores (cache ids) are unique within a stream: go on after the last one read, written
  -- exactly (a Lua number prints 2^52 and more in exponent form).
  bound = '(' .. members[#members]
  if #members < 2 * asked then break end -- the index has no more
end
return {first, 0, pending, entries}
