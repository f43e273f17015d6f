-- ratelimit.lua: a rate limit taken apart from the enqueue, on the user's own slot (the
-- partitioned layout; common.lua is prepended), for all of one user's messages of a batch at
-- once. The settings come in ARGV: the settings hash is in another slot.
-- KEYS[1] fixed-window counter  KEYS[2] GCRA state
-- ARGV[1] limit  ARGV[2] window (s)  ARGV[3] algorithm  ARGV[4] "take" or "refund"  ARGV[5] count
-- take: takes up to count tokens, one per message in order, and returns {taken, retry after ms
-- for the messages after the taken ones (0 when all were taken)}.
-- refund: gives back count tokens taken for messages that were then not accepted (retries of an
-- accepted client_msg_id, a full backlog), so that a rejection costs no quota, as in the single
-- layout; returns {count, 0}.
local limit, window, alg, count = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[5])
if ARGV[4] == 'refund' then
  if alg == 'gcra' then
    local now = now_us()
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
return {take_tokens(KEYS[1], KEYS[2], limit, window, alg, count)}
