-- part_ratelimit.lua: the partitioned layout's rate limit, on the user's own slot (common.lua is
-- prepended). The settings come in ARGV: the settings hash is in another slot.
-- KEYS[1] fixed-window counter  KEYS[2] GCRA state
-- ARGV[1] limit  ARGV[2] window (s)  ARGV[3] algorithm  ARGV[4] "take" or "refund"
-- Returns 0 when a token was taken (or given back), else the retry-after in ms. A refund gives
-- back a token taken for a message that was then not accepted (a retry of an accepted
-- client_msg_id, or a full backlog), so that a rejection costs no quota, as in the single layout.
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[4] == 'refund' then
  if ARGV[3] == 'gcra' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
    local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
    local back = tat - (window * 1000000) / limit
    if back > now then
      redis.call('SET', KEYS[2], string.format('%.0f', back), 'PX', math.ceil((back - now) / 1000))
    else
      redis.call('DEL', KEYS[2])
    end
  elseif tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then
    redis.call('DECR', KEYS[1])
  end
  return 0
end
if ARGV[3] == 'gcra' then
  local retry, new_tat, now = gcra_check(KEYS[2], limit, window)
  if retry > 0 then return retry end
  gcra_take(KEYS[2], new_tat, now)
  return 0
end
local retry = fixed_check(KEYS[1], limit, window)
if retry > 0 then return retry end
fixed_take(KEYS[1], window)
return 0
