-- entry.lua: the one writer of flush-stream entries and ring entries, prepended to every script
-- that adds an entry. Go declares the same field names once (message.EntryFields), and
-- TestEntryFieldsAgree holds the two together: a field added to entries is added here, there,
-- and nowhere else (replay copies every field, history reads every field).

-- envelope is the ring entry of a message: its id and version (as written, exact) and its JSON
-- data. A new message's version is its id.
local function envelope(id, data, version)
  return '{"cache_id":' .. id .. ',"version":' .. (version or id) .. ',"data":' .. data .. '}'
end

-- add_message appends a message of kind (message or private_message) to stream; payload is its
-- ring entry ('' and an unreadable id are kept as they are: the worker dead-letters them). ix1
-- and ix2, when given, are the backlog indexes of its timelines (its channel's, or its two
-- users'): history reads a timeline's entries from them instead of the whole stream, and the
-- workers remove an entry from them once it is flushed. The index entries are gathered in
-- indexes (new_indexes) and written once per index by write_indexes.
local function index_entry(indexes, ix, id, sid)
  local l = indexes.by[ix]
  if not l then l = {}; indexes.by[ix] = l; indexes.order[#indexes.order + 1] = ix end
  l[#l + 1] = id
  l[#l + 1] = sid
end

-- add_entry appends a message of kind to stream and returns its entry id (add_message, or a
-- caller that writes the indexes itself).
local function add_entry(stream, id, kind, payload)
  return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', kind, 'payload', payload)
end

local function add_message(stream, id, kind, payload, indexes, ix1, ix2)
  local sid = add_entry(stream, id, kind, payload)
  if ix1 then
    if not indexes.first then indexes.first = sid end
    index_entry(indexes, ix1, id, sid)
    if ix2 and ix2 ~= ix1 then index_entry(indexes, ix2, id, sid) end
  end
  return sid
end

local function new_indexes() return {order = {}, by = {}} end

-- write_indexes adds the gathered index entries, one ZADD per index (score the cache id as
-- written, exact), and records in since the first indexed entry of the stream: entries before
-- it, written before the indexes existed, are found by a scan.
local function write_indexes(indexes, since)
  for _, ix in ipairs(indexes.order) do
    local l = indexes.by[ix]
    for from = 1, #l, 1000 do
      redis.call('ZADD', ix, unpack(l, from, math.min(#l, from + 999)))
    end
  end
  if indexes.first then redis.call('SET', since, indexes.first, 'NX') end
end

-- add_deletion appends the deletion of message id to stream; owner and recipient name a private
-- message's users ('' or nil when unknown or public), channel a public message's channel, for
-- the tails.
local function add_deletion(stream, id, owner, recipient, channel)
  if owner ~= nil and owner ~= '' then
    return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'delete', 'payload', '',
      'owner_id', owner, 'recipient_id', recipient)
  end
  if channel ~= nil and channel ~= '' then
    return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'delete', 'payload', '',
      'channel_id', channel)
  end
  return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'delete', 'payload', '')
end

-- id_floor is the least sequence value at server time ms of clock-floored ids: per_ms a
-- millisecond since 2025-01-01 (1024 for the single layout's counter, 16 for a partition's; see
-- enqueue.lua for why).
local function id_floor(ms, per_ms) return (ms - 1735689600000) * per_ms end

-- partition_value is the id of value n of partition part's sequence: 2^52 + n * 64 + part (exact:
-- below 2^53); partition_id writes it, exactly (see enqueue.lua).
local function partition_value(n, part) return 4503599627370496 + n * 64 + part end
local function partition_id(n, part) return string.format('%d', partition_value(n, part)) end

-- take_id takes the next id of a stream's sequence at counter, as the enqueue scripts take
-- theirs: a partition's (part, its number) or the single layout's counter, clock-floored when
-- floored. An edit's version is one: above its message's id and every id and version before it
-- in the stream.
local function take_id(counter, part, floored)
  if not part and not floored then
    -- A plain counter: one call (no clock to floor it by).
    return string.format('%d', redis.call('INCR', counter))
  end
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local n = tonumber(redis.call('GET', counter) or '0')
  local floor = 0
  if part then floor = id_floor(ms, 16) elseif floored then floor = id_floor(ms, 1024) end
  if n < floor - 1 then n = floor - 1 end
  n = n + 1
  redis.call('SET', counter, string.format('%d', n))
  if part then return partition_id(n, part) end
  return string.format('%d', n)
end

-- add_edit appends an edit of message id to stream: its payload is the whole new ring entry.
local function add_edit(stream, id, payload)
  return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'edit', 'payload', payload)
end

-- add_reaction appends a reaction to message id to stream: payload is the toggle and the
-- message's counts after it; place is the message's channel, or (private) its users
-- \31-joined, for the live tails.
local function add_reaction(stream, id, payload, place, private)
  if private then
    local owner, recipient = string.match(place, '^([^\31]*)\31(.*)$')
    return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'reaction', 'payload', payload,
      'owner_id', owner, 'recipient_id', recipient)
  end
  return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', 'reaction', 'payload', payload,
    'channel_id', place)
end
