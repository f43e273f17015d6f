-- replay.lua: put one dead letter back on its flush stream, atomically with its removal from
-- the dead-letter stream, so that it is neither lost nor replayed twice.
-- KEYS[1] dead-letter stream  KEYS[2] flush stream
-- ARGV[1] the dead letter's id
-- Returns the new flush-stream entry id, or "" when no such dead letter exists.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return '' end
local f = e[1][2]
local m = {}
for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
local id = redis.call('XADD', KEYS[2], '*', 'cache_id', m['cache_id'] or '', 'kind', m['kind'] or '', 'payload', m['payload'] or '')
redis.call('XDEL', KEYS[1], ARGV[1])
return id
