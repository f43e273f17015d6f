-- common.lua: helpers shared by enqueue_public.lua and enqueue_private.lua; the Go side
-- prepends this file to each of them. It defines functions only and touches no key.

-- settings returns the shared rate limit (limit, window seconds, algorithm), falling back to the
-- defaults passed in ARGV when the settings hash is missing a field.
local function settings(hash, def_limit, def_window, def_alg)
  local v = redis.call('HMGET', hash, 'limit', 'window_seconds', 'algorithm')
  local limit = tonumber(v[1]) or tonumber(def_limit)
  local window = tonumber(v[2]) or tonumber(def_window)
  local alg = v[3] or def_alg
  if alg ~= 'gcra' then alg = 'fixed' end
  return limit, window, alg
end

-- fixed_check returns 0 when one more message fits in the user's window, else the window's
-- remaining time in ms. It reads only: a rejected message must not consume quota or an id.
local function fixed_check(key, limit, window)
  local n = tonumber(redis.call('GET', key) or '0')
  if n < limit then return 0 end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    -- A counter without expiry would block its user forever: give it its window back.
    redis.call('PEXPIRE', key, window * 1000)
    ttl = window * 1000
  end
  if ttl < 1 then ttl = 1 end
  return ttl
end

local function fixed_take(key, window)
  if redis.call('INCR', key) == 1 then
    redis.call('EXPIRE', key, window)
  end
end

-- gcra_check runs the generic cell rate algorithm on the server's clock (TIME), so ingest
-- replicas with skewed clocks still share one schedule. State is the theoretical arrival time
-- (TAT) in microseconds. Returns (retry_after_ms, 0) when rejected, else (0, new_tat, now).
local function gcra_check(key, limit, window)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local period = window * 1000000
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new_tat = tat + period / limit
  local allow_at = new_tat - period
  if allow_at > now then
    return math.ceil((allow_at - now) / 1000), 0, now
  end
  return 0, new_tat, now
end

local function gcra_take(key, new_tat, now)
  local ttl = math.ceil((new_tat - now) / 1000)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, string.format('%.0f', new_tat), 'PX', ttl)
end

-- admit runs the checks every enqueue shares, in the order that keeps a retry idempotent and a
-- rejection free: a known client_msg_id returns its first id; then the rate limit; then the
-- backlog cap. It returns a reply table to send back when the message is not admitted, else nil
-- and a function that takes the user's quota once the message is accepted.
local function admit(k_settings, k_fixed, k_gcra, k_client, k_stream)
  if ARGV[5] == '1' then
    local prev = redis.call('GET', k_client)
    if prev then
      if ARGV[10] == '1' then
        -- A durable retry: write something, so that the WAIT after this script covers the
        -- first write too (WAIT waits for this connection's last write; replication keeps order).
        redis.call('PEXPIRE', k_client, tonumber(ARGV[4]) * 1000)
      end
      return {1, tonumber(prev)}, nil
    end
  end
  local limit, window, alg = settings(k_settings, ARGV[6], ARGV[7], ARGV[8])
  local take
  if alg == 'gcra' then
    local retry, new_tat, now = gcra_check(k_gcra, limit, window)
    if retry > 0 then return {2, retry}, nil end
    take = function() gcra_take(k_gcra, new_tat, now) end
  else
    local retry = fixed_check(k_fixed, limit, window)
    if retry > 0 then return {2, retry}, nil end
    take = function() fixed_take(k_fixed, window) end
  end
  if redis.call('XLEN', k_stream) >= tonumber(ARGV[3]) then
    return {3}, nil
  end
  return nil, take
end

-- push appends entry to a ring and trims it to its size, oldest first.
local function push(ring, entry, size)
  redis.call('RPUSH', ring, entry)
  redis.call('LTRIM', ring, -size, -1)
end

-- accept takes an id, and returns it with the ring entry built around ARGV[1] (the message JSON).
-- With ARGV[11] == '1' the counter is floored by the server's clock, 1024 ids a millisecond
-- since 2025-01-01: a replica promoted after missing the last increments starts past every id
-- the old primary gave (unless the old primary gave more than 1024 a millisecond on average),
-- and ids stay below 2^52 (where the partitioned layout's ids begin) for about 139 years.
local function accept(k_counter)
  local id = redis.call('INCR', k_counter)
  if ARGV[11] == '1' then
    local t = redis.call('TIME')
    local floor = (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - 1735689600000) * 1024
    if id < floor then
      id = floor
      redis.call('SET', k_counter, string.format('%d', id))
    end
  end
  return id, '{"cache_id":' .. string.format('%d', id) .. ',"data":' .. ARGV[1] .. '}'
end

-- publish appends the entry to the flush stream and records the client's id for retries.
local function publish(k_stream, k_client, id, entry)
  local sid = redis.call('XADD', k_stream, '*', 'cache_id', string.format('%d', id), 'kind', ARGV[9], 'payload', entry)
  if ARGV[5] == '1' then
    redis.call('SET', k_client, id, 'NX', 'EX', tonumber(ARGV[4]))
  end
  return sid
end
