-- delete.lua: delete one message (entry.lua and ring.lua are prepended).
-- KEYS[1] id counter (the partition's sequence in the partitioned layout)  KEYS[2] flush stream
-- KEYS[3] the kind's pending deletions (sorted set)  KEYS[4] the message's reactions hash
-- KEYS[5..] list rings that may hold the message
-- ARGV[1] cache id  ARGV[2] backlog cap  ARGV[3] the id's counter value (the id itself in the
-- single layout, id // 64 in the partitioned one)  ARGV[4], ARGV[5] the private message's owner
-- and recipient when known ('' otherwise)  ARGV[6] the public message's channel: carried on the
-- deletion for the live tails
-- Returns -1 when the id was never issued, -2 when the flush stream is at its cap, else the
-- number of ring entries removed. Every accepted delete puts a deletion on the flush stream, so
-- the worker removes the row, or never writes it, whichever it meets first; and records it as
-- pending, so that history hides the message until PostgreSQL has applied the deletion.
local id = tonumber(ARGV[1])
local seq = tonumber(ARGV[3])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if id == nil or id < 1 or seq == nil or seq < 1 or seq > last then return -1 end
if redis.call('XLEN', KEYS[2]) >= tonumber(ARGV[2]) then return -2 end
local removed = 0
redis.call('DEL', KEYS[4]) -- a deletion removes the reactions
for i = 5, #KEYS do
  removed = removed + unring(KEYS[i], ARGV[1])
end
-- A deletion whose entry was trimmed was acked, so applied: forget those first. What is left
-- is bounded by the deletions still in the stream.
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
if first then
  local ms = tonumber(string.match(first[1], '^(%d+)-'))
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ms)
else
  redis.call('DEL', KEYS[3])
end
local sid = add_deletion(KEYS[2], ARGV[1], ARGV[4], ARGV[5], ARGV[6])
redis.call('ZADD', KEYS[3], tonumber(string.match(sid, '^(%d+)-')), ARGV[1])
return removed
