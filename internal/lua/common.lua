-- common.lua: the rate limit's helpers, shared by enqueue.lua, edit.lua and ratelimit.lua; the
-- Go side prepends this file to each of them. It defines functions only and touches no key.

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

-- A limiter is one user's rate limit for the length of a script, on the server's clock now (µs,
-- from TIME; nil for the fixed window, which needs no clock): its state is read once, judged in
-- memory message by message, and written once. Plain functions over a plain table, so that a
-- script run makes no closure for it:
--   rl_new(alg, limit, window, now, k_fixed, k_gcra, state, count) makes a user's limiter for
--     up to count messages (state: the GCRA key's value, false when there is none; the fixed
--     window reads its own);
--   rl_check(l) returns 0 when one more message fits, else the ms until it would; it consumes
--     nothing, so a message rejected for another reason costs no quota;
--   rl_take(l) consumes what the last check allowed;
--   rl_commit(l) writes the state back.
--
-- fixed: a window counter expiring a window after the window's first message. rl_new reserves
-- count at once (INCRBY: the reply is the state, so one call reads and writes it) and rl_commit
-- gives back what was not taken — for one message, the INCR the list-based cache made.
-- gcra: the generic cell rate algorithm on the server's clock, so ingest replicas with skewed
-- clocks still share one schedule. Its state is the theoretical arrival time (TAT) in µs.
local function rl_new(alg, limit, window, now, k_fixed, k_gcra, state, count)
  if alg == 'gcra' then
    local tat = tonumber(state or '0')
    return {gcra = true, period = window * 1000000, step = window * 1000000 / limit, now = now,
      key = k_gcra, tat = tat, start = tat, pending = tat}
  end
  local after = redis.call('INCRBY', k_fixed, count)
  -- A window starts with its first message; NX keeps a running window's end.
  if after == count then redis.call('EXPIRE', k_fixed, window, 'NX') end
  return {limit = limit, window = window, key = k_fixed, n = after - count, reserved = count, taken = 0}
end

local function rl_check(l)
  if l.gcra then
    local now, base = l.now, l.tat
    if base < now then base = now end
    local new_tat = base + l.step
    local allow_at = new_tat - l.period
    if allow_at > now then return math.ceil((allow_at - now) / 1000) end
    l.pending = new_tat
    return 0
  end
  if l.n < l.limit then return 0 end
  if not l.ttl then
    local ttl = redis.call('PTTL', l.key)
    if ttl < 0 then
      -- A counter without expiry would block its user forever: give it its window back.
      redis.call('PEXPIRE', l.key, l.window * 1000)
      ttl = l.window * 1000
    end
    if ttl < 1 then ttl = 1 end
    l.ttl = ttl
  end
  return l.ttl
end

local function rl_take(l)
  if l.gcra then
    l.tat = l.pending
  else
    l.n, l.taken = l.n + 1, l.taken + 1
  end
end

local function rl_commit(l)
  if l.gcra then
    if l.tat == l.start then return end
    local ttl = math.ceil((l.tat - l.now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', l.key, string.format('%.0f', l.tat), 'PX', ttl)
  elseif l.taken < l.reserved then
    redis.call('DECRBY', l.key, l.reserved - l.taken)
  end
end

-- now_us is the server's clock in µs.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- take_tokens takes up to count tokens of one user (keys k_fixed and k_gcra), one per message
-- in order, and returns how many it took and the ms until the next one (0 when all were).
local function take_tokens(k_fixed, k_gcra, limit, window, alg, count)
  local now, state = nil, false
  if alg == 'gcra' then
    now, state = now_us(), redis.call('GET', k_gcra)
  end
  local lim = rl_new(alg, limit, window, now, k_fixed, k_gcra, state, count)
  local taken, retry = 0, 0
  while taken < count do
    retry = rl_check(lim)
    if retry > 0 then break end
    rl_take(lim)
    taken = taken + 1
  end
  rl_commit(lim)
  return taken, retry
end
