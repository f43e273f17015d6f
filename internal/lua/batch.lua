-- batch.lua: helpers of enqueue.lua; the Go side prepends this file to it. It defines functions
-- only and touches no key.

-- known returns the id a message with this client_msg_id record was accepted with, or nil.
-- When a WAIT follows the script (durable), a retry writes something, so that the WAIT covers
-- the first write too (WAIT waits for this connection's last write; replication keeps order).
local function known(key, ttl, durable)
  local prev = redis.call('GET', key)
  if prev and durable then
    redis.call('PEXPIRE', key, ttl * 1000)
  end
  return prev
end

-- push_ring appends entries, oldest first, to the ring at key and trims it to size: only the
-- entries that stay are pushed, in as few RPUSHes as Lua's stack allows. A ring of an idle
-- channel or user leaves memory ttl ms after its last push (ttl 0: never; RING_IDLE_TTL).
local function push_ring(key, entries, size, ttl)
  local from, len = math.max(1, #entries - size + 1), 0
  while from <= #entries do
    local to = math.min(#entries, from + 999)
    len = redis.call('RPUSH', key, unpack(entries, from, to))
    from = to + 1
  end
  -- A quiet channel's ring is short: trim only what outgrew the size (most rings, with many
  -- channels, never do).
  if len > size then redis.call('LTRIM', key, -size, -1) end
  if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
end
