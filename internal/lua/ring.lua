-- ring.lua: removal from list rings, shared by delete.lua and unring.lua (the Go side prepends
-- this file). It defines functions only.

-- unring removes the entry of cache id id (a decimal string) from the list ring at key and
-- returns how many entries it removed. Ring entries begin with {"cache_id":<id>, as ingest writes
-- them; an entry written by another producer, with other spacing, is decoded to compare.
local function unring(key, id)
  local prefix = '{"cache_id":' .. id .. ','
  local n = tonumber(id)
  local removed = 0
  for _, v in ipairs(redis.call('LRANGE', key, 0, -1)) do
    local match = string.sub(v, 1, #prefix) == prefix
    if not match and string.sub(v, 1, 12) ~= '{"cache_id":' then
      local ok, e = pcall(cjson.decode, v)
      match = ok and type(e) == 'table' and tonumber(e.cache_id) == n
    end
    if match then
      removed = removed + redis.call('LREM', key, 1, v)
    end
  end
  return removed
end

-- replace_in_ring puts entry in place of the entry of cache id id in the list ring at key (an
-- edit: the ring keeps its order); a ring that no longer holds it is left as it is. A ring is in
-- id order — pushed in the order the ids were taken, edited in place, deleted from — so the entry
-- is found by a binary search of LINDEX reads: reading a ring of 500 whole for each edit cost
-- Valkey more than the rest of the edit. An entry of another shape (another producer's) makes
-- it read the ring whole instead.
local function replace_in_ring(key, id, entry)
  local want, prefix = tonumber(id), '{"cache_id":' .. id .. ','
  local lo, hi = 0, redis.call('LLEN', key) - 1
  local probe = lo -- the oldest first: most edited messages are older than the whole ring
  while lo <= hi do
    local mid = probe or math.floor((lo + hi) / 2)
    probe = nil
    local v = redis.call('LINDEX', key, mid)
    local got = v and tonumber(string.match(v, '^{"cache_id":(%d+),'))
    if got == nil then
      for i, e in ipairs(redis.call('LRANGE', key, 0, -1)) do
        if string.sub(e, 1, #prefix) == prefix then
          redis.call('LSET', key, i - 1, entry)
          return 1
        end
      end
      return 0
    elseif got == want then
      redis.call('LSET', key, mid, entry)
      return 1
    elseif got < want then
      lo = mid + 1
    else
      hi = mid - 1
    end
  end
  return 0
end
