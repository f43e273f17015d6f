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

-- limits returns the rate limit's operations for the length of a script, on the server's
-- clock now (µs, from TIME). Each user's state is read once (by the caller: state is the value
-- of the algorithm's key, false when there is none), judged in memory message by message, and
-- written once:
--   new(k_fixed, k_gcra, state) makes a user's limiter;
--   check(l) returns 0 when one more message fits, else the ms until it would; it consumes
--     nothing, so a message rejected for another reason costs no quota;
--   take(l) consumes what the last check allowed;
--   commit(l) writes the state back, if anything was taken.
-- A limiter is a plain table, the operations are made once: a batch has a limiter per user.
--
-- fixed: a window counter, INCR-like, expiring a window after the window's first message.
-- gcra: the generic cell rate algorithm on the server's clock, so ingest replicas with skewed
-- clocks still share one schedule. Its state is the theoretical arrival time (TAT) in µs.
local function limits(limit, window, alg, now)
  local ops = {}
  if alg == 'gcra' then
    local period = window * 1000000
    local step = period / limit
    ops.new = function(_, k_gcra, state)
      local tat = tonumber(state or '0')
      return {key = k_gcra, tat = tat, start = tat, pending = tat}
    end
    ops.check = function(l)
      local base = l.tat
      if base < now then base = now end
      local new_tat = base + step
      local allow_at = new_tat - period
      if allow_at > now then return math.ceil((allow_at - now) / 1000) end
      l.pending = new_tat
      return 0
    end
    ops.take = function(l) l.tat = l.pending end
    ops.commit = function(l)
      if l.tat == l.start then return end
      local ttl = math.ceil((l.tat - now) / 1000)
      if ttl < 1 then ttl = 1 end
      redis.call('SET', l.key, string.format('%.0f', l.tat), 'PX', ttl)
    end
    return ops
  end
  ops.new = function(k_fixed, _, state)
    return {key = k_fixed, existed = state ~= false and state ~= nil, n = tonumber(state or '0'), taken = 0}
  end
  ops.check = function(l)
    if l.n < limit then return 0 end
    if not l.ttl then
      if not l.existed then
        l.ttl = window * 1000 -- filled by this script: its window starts now
      else
        local ttl = redis.call('PTTL', l.key)
        if ttl < 0 then
          -- A counter without expiry would block its user forever: give it its window back.
          redis.call('PEXPIRE', l.key, window * 1000)
          ttl = window * 1000
        end
        if ttl < 1 then ttl = 1 end
        l.ttl = ttl
      end
    end
    return l.ttl
  end
  ops.take = function(l) l.n = l.n + 1; l.taken = l.taken + 1 end
  ops.commit = function(l)
    if l.taken == 0 then return end
    if l.existed then
      redis.call('INCRBY', l.key, l.taken)
    else
      redis.call('SET', l.key, l.taken, 'EX', window)
    end
  end
  return ops
end
