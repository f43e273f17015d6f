-- reference.lua: the bare reference's script, simpler than chatpipe's enqueue: a
-- fixed-window rate limit, an id, the ring, the flush stream.
-- KEYS[1] rate-limit counter  KEYS[2] id counter  KEYS[3] ring  KEYS[4] flush stream
-- ARGV[1] limit  ARGV[2] window seconds  ARGV[3] the message JSON  ARGV[4] ring size
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return -1 end
local id = redis.call('INCR', KEYS[2])
local entry = '{"cache_id":' .. id .. ',"data":' .. ARGV[3] .. '}'
redis.call('RPUSH', KEYS[3], entry)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
redis.call('XADD', KEYS[4], '*', 'cache_id', id, 'kind', 'message', 'payload', entry)
return id
