-- entry.lua: the one writer of flush-stream entries and ring entries, prepended to every script
-- that adds an entry. Go declares the same field names once (message.EntryFields), and
-- TestEntryFieldsAgree holds the two together: a field added to entries is added here, there,
-- and nowhere else (replay copies every field, history reads every field).

-- envelope is the ring entry of a message: its id (as written, exact) and its JSON data.
local function envelope(id, data)
  return '{"cache_id":' .. id .. ',"data":' .. data .. '}'
end

-- add_message appends a message of kind (message or private_message) to stream; payload is its
-- ring entry ('' and an unreadable id are kept as they are: the worker dead-letters them).
local function add_message(stream, id, kind, payload)
  return redis.call('XADD', stream, '*', 'cache_id', id, 'kind', kind, 'payload', payload)
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
