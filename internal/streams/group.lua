#!lua flags=allow-oom
-- group.lua: create the consumer group at the stream's start (MKSTREAM, so that entries added
-- before any worker ran are read too), also while Valkey is full: XGROUP CREATE alone is
-- refused under OOM, and a worker that cannot create its group never drains a full Valkey.
-- KEYS[1] flush stream
-- ARGV[1] group
-- Returns 1 when created, 0 when the group existed.
local r = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 9) == 'BUSYGROUP' then return 0 end
  return r
end
return 1
