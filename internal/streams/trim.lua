-- trim.lua: trim a flush stream below the oldest entry that any group still needs.
-- KEYS[1] flush stream
-- ARGV[1] retention in ms: entries younger than this (by the server's clock) are kept even when
-- acked, for live-tail readers that resume after a lost connection
-- ARGV[2] optional: an id to trim below at most (a bound that readers of lagging PostgreSQL
-- standbys set: only what they replayed may go)
-- Returns the number of entries removed and the id it would trim below without ARGV[2]. A
-- group needs its oldest pending entry and every entry after its last-delivered id; what lies
-- below the lowest of those over all groups has been acked by every group. A stream without groups is left alone. Entries are never trimmed by
-- length, so an unflushed entry is never removed (invariant 4).
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return {0, '0-0'} end
local min_ms, min_seq
for _, g in ipairs(groups) do
  local info = {}
  for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
  local ms, seq
  if tonumber(info['pending']) > 0 then
    ms, seq = parse(redis.call('XPENDING', KEYS[1], info['name'])[2])
  else
    ms, seq = parse(info['last-delivered-id'])
    seq = seq + 1
  end
  if min_ms == nil or ms < min_ms or (ms == min_ms and seq < min_seq) then
    min_ms, min_seq = ms, seq
  end
end
local retain = tonumber(ARGV[1] or '0') or 0
if retain > 0 then
  local t = redis.call('TIME')
  local keep = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - retain
  if keep < min_ms then min_ms, min_seq = keep, 0 end
end
local below = string.format('%d-%d', min_ms, min_seq)
if ARGV[2] and ARGV[2] ~= '' then
  local cap_ms, cap_seq = parse(ARGV[2])
  if cap_ms == nil then return redis.error_reply('ERR trim: bad bound ' .. ARGV[2]) end
  if cap_ms < min_ms or (cap_ms == min_ms and cap_seq < min_seq) then
    min_ms, min_seq = cap_ms, cap_seq
  end
end
return {redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', min_ms, min_seq)), below}
