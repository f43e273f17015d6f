-- entry.lua: the one writer of flush-stream entries and ring entries, prepended to every script
-- that adds an entry. Go declares the same field names once (message.EntryFields), and
-- TestEntryFieldsAgree holds the two together: a field added to entries is added here, there,
-- and nowhere else (replay copies every field, history reads every field).

-- envelope is the ring entry of a message: its id (as written, exact) and its JSON data.
local function envelope(id, data)
  return '{"cache_id":' .. id .. ',"data":' .. data .. '}'
end

-- add_message appends a message of kind (message or private_message) to stream; payload is its
-- ring entry ('' and an unreadable id are kept as they are: the worker dead-letters them). ix1
-- and ix2, when given, are the backlog indexes of its timelines (its channel's, or its two
-- users'): history reads a timeline's entries from them instead of the whole stream, and the
-- workers remove an entry from them once it is flushed. since is the key recording the first
-- indexed entry of the stream: entries before it are found by a scan.
local function add_message(stream, id, kind, payload, ix1, ix2, since)
  local sid = redis.call('XADD', stream, '*', 'cache_id', id, 'kind', kind, 'payload', payload)
  if ix1 then
    local score = tonumber(id) or 0
    redis.call('ZADD', ix1, score, sid)
    if ix2 and ix2 ~= ix1 then redis.call('ZADD', ix2, score, sid) end
    redis.call('SET', since, sid, 'NX')
  end
  return sid
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
