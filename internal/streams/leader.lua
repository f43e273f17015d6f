-- leader.lua: hold or take a lease, so that one replica exports the queue gauges.
-- KEYS[1] lease key
-- ARGV[1] this replica's name  ARGV[2] lease time in ms
-- Returns 1 when this replica holds the lease (taken or renewed), else 0.
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
