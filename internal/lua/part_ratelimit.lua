-- part_ratelimit.lua: the partitioned layout's rate limit, on the user's own slot (common.lua is
-- prepended), for all of one user's messages of a batch at once. The settings come in ARGV: the
-- settings hash is in another slot.
-- KEYS[1] fixed-window counter  KEYS[2] GCRA state
-- ARGV[1] limit  ARGV[2] window (s)  ARGV[3] algorithm  ARGV[4] "take" or "refund"  ARGV[5] count
-- take: takes up to count tokens, one per message in order, and returns {taken, retry after ms
-- for the messages after the taken ones (0 when all were taken)}.
-- refund: gives back count tokens taken for messages that were then not accepted (retries of an
-- accepted client_msg_id, a full backlog), so that a rejection costs no quota, as in the single
-- layout; returns {count, 0}.
local limit, window, alg, count = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if ARGV[4] == 'refund' then
  if alg == 'gcra' then
    local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
    local back = tat - count * (window * 1000000) / limit
    if back > now then
      redis.call('SET', KEYS[2], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000))
    else
      redis.call('DEL', KEYS[2])
    end
  else
    local n = tonumber(redis.call('GET', KEYS[1]) or '0')
    if n > 0 then redis.call('DECRBY', KEYS[1], math.min(n, count)) end
  end
  return {count, 0}
end
local state = KEYS[1]
if alg == 'gcra' then state = KEYS[2] end
local rl = limits(limit, window, alg, now)
local lim = rl.new(KEYS[1], KEYS[2], redis.call('GET', state))
local taken, retry = 0, 0
while taken < count do
  retry = rl.check(lim)
  if retry > 0 then break end
  rl.take(lim)
  taken = taken + 1
end
rl.commit(lim)
return {taken, retry}
