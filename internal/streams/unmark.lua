-- unmark.lua: remove hash fields that still hold the values given (a compare-and-delete).
-- KEYS[1] the hash  ARGV field, value, field, value, …
-- Returns how many fields it removed.
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return removed
