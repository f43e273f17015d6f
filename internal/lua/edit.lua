-- edit.lua: accept an edit of one message, on the slot of its flush stream, in both layouts
-- (common.lua, entry.lua and ring.lua are prepended). Ingest found the message and checked its
-- author and place; this script decides what can change meanwhile — a deletion, another edit —
-- and writes the edit where the message is: its stream, its rings, its backlog indexes.
-- KEYS[1] id counter (the partition's sequence)  KEYS[2] flush stream  KEYS[3] the kind's
--   pending deletions  KEYS[4] the stream's edits hash (cache id → the latest edit's version,
--   until PostgreSQL has it)  KEYS[5] the stream's indexed-since key
-- KEYS[6] rate settings hash, or the stream again where the rate limit was taken before (the
--   partitioned layout, on the user's slot)  KEYS[7], KEYS[8] the author's fixed-window counter
--   and GCRA state (the stream again then: every key of a call is in the stream's slot)
-- KEYS[9 .. 8+n] the backlog indexes of the message's timelines  KEYS[9+n ..] list rings that
--   may hold it
-- ARGV[1] cache id  ARGV[2] backlog cap  ARGV[3] the version ingest found  ARGV[4] If-Match's
--   version ('' for none)  ARGV[5] the new message's JSON data (content and edited_at new, the
--   rest the message's)  ARGV[6] the partition ('' in the single layout)  ARGV[7] n
--   ARGV[8] '1' for clock-floored ids  ARGV[9..11] default limit, window, algorithm
-- Returns {code, value}: 0, version (accepted); 1, the current version (If-Match names another);
-- 2, 0 (deleted); 3, 0 (backlog full); 4, retry after ms (rate limited). Checks in that order,
-- so that a refused edit costs no quota.
local id = ARGV[1]
if redis.call('ZSCORE', KEYS[3], id) then return {2, 0} end
local current = tonumber(ARGV[3])
local marked = tonumber(redis.call('HGET', KEYS[4], id) or '0')
if marked > current then current = marked end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then return {1, current} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {3, 0} end
local rl, lim
if KEYS[6] ~= KEYS[2] then
  local limit, window, alg = settings(KEYS[6], ARGV[9], ARGV[10], ARGV[11])
  local t = redis.call('TIME')
  rl = limits(limit, window, alg, tonumber(t[1]) * 1000000 + tonumber(t[2]))
  local state = KEYS[7]
  if alg == 'gcra' then state = KEYS[8] end
  lim = rl.new(KEYS[7], KEYS[8], redis.call('GET', state))
  local retry = rl.check(lim)
  if retry > 0 then return {4, retry} end
  rl.take(lim)
  rl.commit(lim)
end

local part = nil
if ARGV[6] ~= '' then part = tonumber(ARGV[6]) end
local version = take_id(KEYS[1], part, ARGV[8] == '1')
local entry = envelope(id, ARGV[5], version)
local sid = add_edit(KEYS[2], id, entry)
-- History reads a timeline's backlog from its index: the message's member now names the edit,
-- so a page shows the latest version, of a message still waiting and of an old one alike.
local n = tonumber(ARGV[7])
for i = 9, 8 + n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], id, id)
  redis.call('ZADD', KEYS[i], id, sid)
end
if n > 0 then redis.call('SET', KEYS[5], sid, 'NX') end
for i = 9 + n, #KEYS do replace_in_ring(KEYS[i], id, entry) end
redis.call('HSET', KEYS[4], id, version)
return {0, tonumber(version)}
