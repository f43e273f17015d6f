-- delete.lua: delete one message.
-- KEYS[1] id counter (the partition's sequence in the partitioned layout)  KEYS[2] flush stream
-- KEYS[3..] rings that may hold the message
-- ARGV[1] cache id  ARGV[2] backlog cap  ARGV[3] the id's counter value (the id itself in the
-- single layout, id // 64 in the partitioned one)
-- Returns -1 when the id was never issued, -2 when the flush stream is at its cap, else the
-- number of ring entries removed. Every accepted delete puts a deletion on the flush stream, so
-- the worker removes the row, or never writes it, whichever it meets first.
local id = tonumber(ARGV[1])
local seq = tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if id == nil or id < 1 or seq == nil or seq < 1 or seq > last then return -1 end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return -2 end
local prefix = '{"cache_id":' .. ARGV[1] .. ','
local removed = 0
for i = 3, #KEYS do
  for _, v in ipairs(redis.call('LRANGE', KEYS[i], 0, -1)) do
    local match = string.sub(v, 1, #prefix) == prefix
    if not match and string.sub(v, 1, 12) ~= '{"cache_id":' then
      -- An entry written by another producer, with other spacing: decode it to compare.
      local ok, e = pcall(cjson.decode, v)
      match = ok and type(e) == 'table' and tonumber(e.cache_id) == id
    end
    if match then
      removed = removed + redis.call('LREM', KEYS[i], 1, v)
    end
  end
end
redis.call('XADD', KEYS[2], '*', 'cache_id', ARGV[1], 'kind', 'delete', 'payload', '')
return removed
