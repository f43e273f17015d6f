-- common.lua: helpers shared by enqueue.lua and part_ratelimit.lua; the Go side prepends this
-- file to each of them. It defines functions only and touches no key.

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

-- limiter is one user's rate limit for the length of a script: its state is read once, judged
-- in memory message by message, and written once. check() returns 0 when one more message
-- fits, else the time in ms until it would; it consumes nothing, so a message rejected for
-- another reason costs no quota. take() consumes what the last check() allowed. commit()
-- writes the state back, if anything was taken. state is the value of the algorithm's key
-- (k_fixed or k_gcra), read by the caller, false when there is none.
--
-- fixed: a window counter, INCR-like, expiring a window after the window's first message.
-- gcra: the generic cell rate algorithm on the server's clock (now, in µs, from TIME), so
-- ingest replicas with skewed clocks still share one schedule. Its state is the theoretical
-- arrival time (TAT) in µs.
local function limiter(k_fixed, k_gcra, limit, window, alg, now, state)
  local l = {}
  if alg == 'gcra' then
    local period = window * 1000000
    local tat = tonumber(state or '0')
    local start, pending = tat, tat
    l.check = function()
      local base = tat
      if base < now then base = now end
      local new_tat = base + period / limit
      local allow_at = new_tat - period
      if allow_at > now then return math.ceil((allow_at - now) / 1000) end
      pending = new_tat
      return 0
    end
    l.take = function() tat = pending end
    l.commit = function()
      if tat == start then return end
      local ttl = math.ceil((tat - now) / 1000)
      if ttl < 1 then ttl = 1 end
      redis.call('SET', k_gcra, string.format('%.0f', tat), 'PX', ttl)
    end
    return l
  end
  local v = state
  local n, taken, ttl = tonumber(v or '0'), 0, nil
  l.check = function()
    if n < limit then return 0 end
    if not ttl then
      if not v then
        ttl = window * 1000 -- filled by this script: its window starts now
      else
        ttl = redis.call('PTTL', k_fixed)
        if ttl < 0 then
          -- A counter without expiry would block its user forever: give it its window back.
          redis.call('PEXPIRE', k_fixed, window * 1000)
          ttl = window * 1000
        end
        if ttl < 1 then ttl = 1 end
      end
    end
    return ttl
  end
  l.take = function() n = n + 1; taken = taken + 1 end
  l.commit = function()
    if taken == 0 then return end
    if v then
      redis.call('INCRBY', k_fixed, taken)
    else
      redis.call('SET', k_fixed, taken, 'EX', window)
    end
  end
  return l
end
