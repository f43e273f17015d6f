-- edit.lua: accept an edit of one message, on the slot of its flush stream, in both layouts
-- (common.lua, entry.lua and ring.lua are prepended). It decides what can change meanwhile — a
-- deletion, another edit — and writes the edit where the message is: its stream, its rings, its
-- backlog indexes. Two modes:
--   find: the message is looked up here, in its channel's backlog index (a public message still
--     waiting, or edited lately), its author checked and the new content put in its data: one
--     round trip for the usual edit. Not found there (or of a shape this script does not
--     splice), it answers so, and ingest finds the message itself (PostgreSQL) and calls again:
--   whole: ingest found the message and checked its author and place; ARGV[5] is the whole new
--     data.
-- KEYS[1] id counter (the partition's sequence)  KEYS[2] flush stream  KEYS[3] the kind's
--   pending deletions  KEYS[4] the stream's edits hash (cache id → the latest edit's version,
--   until PostgreSQL has it)  KEYS[5] the stream's indexed-since key
-- KEYS[6] rate settings hash, or the stream again where the rate limit was taken before (the
--   partitioned layout, on the user's slot)  KEYS[7], KEYS[8] the author's fixed-window counter
--   and GCRA state (the stream again then: every key of a call is in the stream's slot)
-- KEYS[9 .. 8+n] the backlog indexes of the message's timelines (find: its channel's)
-- KEYS[9+n ..] list rings that may hold it
-- ARGV[1] cache id  ARGV[2] backlog cap  ARGV[3] the version ingest found (find: 0)
--   ARGV[4] If-Match's version ('' for none)  ARGV[5] whole: the new message's JSON data; find:
--   the new content as a JSON string  ARGV[6] the partition ('' in the single layout)  ARGV[7] n
--   ARGV[8] '1' for clock-floored ids  ARGV[9..11] default limit, window, algorithm
--   ARGV[12] 'find' or 'whole'  ARGV[13] find: the edit's time  ARGV[14] find: the editor's
--   owner_id as a JSON string
-- Returns {code, value}: 0, version (accepted); 1, the current version (If-Match names another);
-- 2, 0 (deleted); 3, 0 (backlog full); 4, retry after ms (rate limited); 5, 0 (find: not found
-- here, look it up); 6, 0 (find: another author). Checks in that order, so that a refused edit
-- costs no quota.
local id = ARGV[1]
if redis.call('ZSCORE', KEYS[3], id) then return {2, 0} end
local current, data = tonumber(ARGV[3]), ARGV[5]

-- splice returns the data of payload (a ring entry as ingest writes it: owner_id first, then
-- recipient or channel, username, content, created_at, edited_at once edited) with the new
-- content and edit time, and the entry's version; nil for another shape; false when its
-- owner is not the editor.
local function splice(payload)
  local version = tonumber(string.match(payload, '^{"cache_id":%d+,"version":(%d+),')) or tonumber(id)
  local at = string.find(payload, ',"data":{"owner_id":"', 1, true)
  if not at then return nil end
  local d = string.sub(payload, at + 8, -2)
  local owner = string.match(d, '^{"owner_id":("[^"\\]*"),')
  if not owner then return nil end
  if owner ~= ARGV[14] then return false end
  local c = string.find(d, ',"content":"', 1, true)
  -- Inside a JSON string every quote is escaped: the first unescaped '","created_at":"' after
  -- the content's start ends it.
  local e = c and string.find(d, '","created_at":"', c, true)
  if not e then return nil end
  local created, rest = string.match(d, '^([^"]*)"(.*)$', e + 16)
  if not created or not (rest == '}' or string.match(rest, '^,"edited_at":"[^"]*"}$')) then return nil end
  return string.sub(d, 1, c - 1) .. ',"content":' .. ARGV[5] .. ',"created_at":"' .. created ..
    '","edited_at":"' .. ARGV[13] .. '"}', version
end

if ARGV[12] == 'find' then
  local sid = redis.call('ZRANGEBYSCORE', KEYS[9], id, id, 'LIMIT', 0, 1)[1]
  local e = sid and redis.call('XRANGE', KEYS[2], sid, sid)[1]
  if not e then return {5, 0} end
  local payload
  for j = 1, #e[2], 2 do
    if e[2][j] == 'payload' then payload = e[2][j + 1] end
  end
  local spliced, version = splice(payload or '')
  if spliced == false then return {6, 0} end
  if not spliced then return {5, 0} end
  data, current = spliced, version
end
local marked = tonumber(redis.call('HGET', KEYS[4], id) or '0')
if marked > current then current = marked end
if ARGV[4] ~= '' and tonumber(ARGV[4]) ~= current then return {1, current} end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return {3, 0} end
if KEYS[6] ~= KEYS[2] then
  local limit, window, alg = settings(KEYS[6], ARGV[9], ARGV[10], ARGV[11])
  local taken, retry = take_tokens(KEYS[7], KEYS[8], limit, window, alg, 1)
  if taken < 1 then return {4, retry} end
end

local part = nil
if ARGV[6] ~= '' then part = tonumber(ARGV[6]) end
local version = take_id(KEYS[1], part, ARGV[8] == '1')
local entry = envelope(id, data, version)
local sid = add_edit(KEYS[2], id, entry)
-- History reads a timeline's backlog from its index: the message's member now names the edit,
-- so a page shows the latest version, of a message still waiting and of an old one alike.
local n = tonumber(ARGV[7])
for i = 9, 8 + n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], id, id)
  redis.call('ZADD', KEYS[i], id, sid)
end
if n > 0 and ARGV[12] ~= 'find' then redis.call('SET', KEYS[5], sid, 'NX') end -- found: set
for i = 9 + n, #KEYS do replace_in_ring(KEYS[i], id, entry) end
redis.call('HSET', KEYS[4], id, version)
return {0, tonumber(version)}
