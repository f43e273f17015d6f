-- mirror.lua: move entries of a legacy flush list into the flush stream, in one atomic step
-- (entry.lua is prepended).
-- KEYS[1] legacy flush list  KEYS[2] flush stream  KEYS[3] the stream's indexed-since key
-- ARGV[1] most entries to move  ARGV[2] entry kind  ARGV[3] backlog cap
-- ARGV[4] the default channel's backlog index  ARGV[5] a private backlog index's name without
--   its user: each entry is indexed under its timelines, as an enqueue does. These keys are
--   named by ARGV, not KEYS, since a private entry's users are known only once it is read; the
--   legacy lists exist in the single layout only, on one server, where that is allowed.
-- Returns {moved, left in the list}. Entries are popped from the head (the list-based cache
-- pushes with RPUSH) and each becomes one stream entry; the stream never grows past the cap,
-- what does not fit stays in the list. An entry whose cache_id cannot be read is still moved,
-- with an empty cache_id, so that the worker dead-letters it with the reason.
local room = tonumber(ARGV[3]) - redis.call('XLEN', KEYS[2])
local n = tonumber(ARGV[1])
if room < n then n = room end
if n <= 0 then return {0, redis.call('LLEN', KEYS[1])} end
local items = redis.call('LPOP', KEYS[1], n)
if not items then return {0, 0} end
local indexes = new_indexes()
for _, v in ipairs(items) do
  local id, ix1, ix2 = '', nil, nil
  local ok, e = pcall(cjson.decode, v)
  if ok and type(e) == 'table' and tonumber(e.cache_id) then
    id = string.format('%d', tonumber(e.cache_id))
    local d = e.data
    if ARGV[2] ~= 'private_message' then
      ix1 = ARGV[4]
    elseif type(d) == 'table' and type(d.owner_id) == 'string' and type(d.recipient_id) == 'string' then
      ix1, ix2 = ARGV[5] .. d.owner_id, ARGV[5] .. d.recipient_id
    end
  end
  add_message(KEYS[2], id, ARGV[2], v, indexes, ix1, ix2)
end
write_indexes(indexes, KEYS[3])
return {#items, redis.call('LLEN', KEYS[1])}
