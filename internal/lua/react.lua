-- react.lua: react(K, A) adds or removes one user's emoji on a message, on the slot of its flush
-- stream, in both layouts: react_one.lua calls it once (KEYS, ARGV), react_many.lua for each
-- toggle of a batch, in order (common.lua and entry.lua are prepended). The message's reactions
-- live in one hash (keyspace.Reactions) while they are hot:
--   v the reactions' version; o the emoji (each a JSON string) in first-added order, each with
--   its count, all \31-joined; u:<emoji>\31<user> who reacted, at what version; m:<user> the
--   user's emoji, \31-joined, for the readers' "me"; j the counts as the JSON array the read
--   side answers; w the message's place (its channel, or its users \31-joined);
--   p '1' when the hash was loaded from PostgreSQL, which knows who reacted only for the users
--   loaded since (l:<user>).
-- Two modes:
--   find: the hash is there (with the reacting user known), or the message waits in the
--     backlog index of the timeline (its channel's, the reacting user's private one), so it
--     has no reactions in PostgreSQL yet: the hash is started empty. Else it answers so, and
--     ingest looks the message up (PostgreSQL) and calls again:
--   load: A[15..18] are what PostgreSQL holds (the counts, their version, the user's own
--     emoji) and the message's place, as ingest found it; a hash made meanwhile wins.
-- K[1] id counter (the partition's sequence)  K[2] flush stream  K[3] the kind's
--   pending deletions  K[4] the reactions hash  K[5] the timeline's backlog index
-- K[6] rate settings hash, or the stream where the rate limit was taken before (then
--   K[7], K[8] are the stream too)  K[7], K[8] the user's fixed-window counter
--   and GCRA state
-- A[1] cache id  A[2] backlog cap  A[3] the partition ('' in the single layout)
--   A[4] '1' for clock-floored ids  A[5..7] default limit, window, algorithm
--   A[8] 'add' or 'remove'  A[9] the emoji as a JSON string  A[10] the user
--   A[11] the user as a JSON string  A[12] the most distinct emoji a message may have
--   A[13] the hash's idle TTL (ms; 0: never)  A[14] 'find' or 'load'
--   A[15] the message's place: a public message's channel, or a private one's users
--     \31-joined (find: the channel; a private message's users are read from its entry)
--   A[16] load: the counts, emoji and count \31-joined  A[17] load: their version
--   A[18] load: the user's emoji and the version of each, \31-joined  A[19] '1' for a private message
-- Returns {code, value, changed, counts}: 0, the version, 1 or 0, the counts JSON (accepted, or
-- nothing to change); 2 (deleted); 3 (backlog full); 4, retry after ms (rate limited); 5 (look
-- the message up and load it); 6 (not one of the private message's users); 7 (not in this
-- timeline); 8 (too many distinct emoji). A refusal writes nothing and costs no quota.
local function split(s)
  local out = {}
  if not s or s == '' then return out end
  for part in string.gmatch(s, '[^\31]+') do out[#out + 1] = part end
  return out
end

-- parse reads o: the emoji in order and their counts.
local function parse(o)
  local order, count, parts = {}, {}, split(o)
  for i = 1, #parts, 2 do
    order[#order + 1] = parts[i]
    count[parts[i]] = tonumber(parts[i + 1])
  end
  return order, count
end

-- encode writes o back, and the counts as the read side answers them.
local function encode(order, count)
  local o, j = {}, {}
  for i, e in ipairs(order) do
    o[#o + 1] = e
    o[#o + 1] = count[e]
    j[i] = '{"emoji":' .. e .. ',"count":' .. count[e] .. '}'
  end
  return table.concat(o, '\31'), '[' .. table.concat(j, ',') .. ']'
end

-- memo keeps what a call's toggles share, read once a call: the backlog's length by stream
-- (counted on as entries are added) and the rate-limit settings.
local memo = {len = {}, settings = {}}

local function react(K, A)
  local id, rx, user, emoji = A[1], K[4], A[10], A[9]
  if redis.call('ZSCORE', K[3], id) then return {2, 0, 0, ''} end
  local private = A[19] == '1'

  local function load_user()
    local mine, emoji = split(A[18]), {}
    for i = 1, #mine, 2 do
      redis.call('HSET', rx, 'u:' .. mine[i] .. '\31' .. user, mine[i + 1])
      emoji[#emoji + 1] = mine[i]
    end
    redis.call('HSET', rx, 'l:' .. user, '1', 'm:' .. user, table.concat(emoji, '\31'))
  end

  local uf = 'u:' .. emoji .. '\31' .. user
  -- One read of what the toggle needs: the version, the place, whether loaded from PostgreSQL,
  -- the counts (o, j), whether the user has the emoji, whether the user was loaded.
  local function read() return redis.call('HMGET', rx, 'v', 'w', 'p', 'o', 'j', uf, 'l:' .. user, 'm:' .. user) end
  local h = read()
  if not h[1] then
    if A[14] == 'load' then
      local o, j = encode(parse(A[16]))
      redis.call('HSET', rx, 'v', A[17], 'w', A[15], 'o', o, 'p', '1', 'j', j)
      load_user()
    else
      local sid = redis.call('ZRANGEBYSCORE', K[5], id, id, 'LIMIT', 0, 1)[1]
      if not sid then return {5, 0, 0, ''} end
      local w = A[15]
      if w == '' then
        -- A private message's users, read from its entry's data as ingest writes it.
        local e = redis.call('XRANGE', K[2], sid, sid)[1]
        local payload = ''
        for j = 1, #(e and e[2] or {}), 2 do
          if e[2][j] == 'payload' then payload = e[2][j + 1] end
        end
        local owner = string.match(payload, '"owner_id":"([^"\\]*)"')
        local recipient = string.match(payload, '"recipient_id":"([^"\\]*)"')
        if not recipient then return {5, 0, 0, ''} end
        if not owner then return {5, 0, 0, ''} end
        w = owner .. '\31' .. recipient
      end
      redis.call('HSET', rx, 'v', '0', 'w', w, 'o', '', 'j', '[]')
    end
    if tonumber(A[13]) > 0 then redis.call('PEXPIRE', rx, A[13]) end
    h = read()
  elseif h[3] == '1' and not h[7] then
    if A[14] ~= 'load' then return {5, 0, 0, ''} end
    load_user()
    h = read()
  end

  -- The place: a public message in the path's channel; a private one's users.
  if private then
    local users = split(h[2])
    if users[1] ~= user and users[2] ~= user then return {6, 0, 0, ''} end
  elseif h[2] ~= A[15] then
    return {7, 0, 0, ''}
  end

  local add = A[8] == 'add'
  if (h[6] ~= false) == add then
    return {0, tonumber(h[1]), 0, h[5] or '[]'}
  end
  local order, count = parse(h[4])
  local n = count[emoji] or 0
  if add and n == 0 and #order >= tonumber(A[12]) then return {8, 0, 0, ''} end
  local len = memo.len[K[2]] or redis.call('XLEN', K[2])
  memo.len[K[2]] = len
  if len >= tonumber(A[2]) then return {3, 0, 0, ''} end
  if K[6] ~= K[2] then
    local rate = memo.settings[K[6]] or {settings(K[6], A[5], A[6], A[7])}
    memo.settings[K[6]] = rate
    local limit, window, alg = rate[1], rate[2], rate[3]
    local taken, retry = take_tokens(K[7], K[8], limit, window, alg, 1)
    if taken < 1 then return {4, retry, 0, ''} end
  end

  local part = nil
  if A[3] ~= '' then part = tonumber(A[3]) end
  local version = take_id(K[1], part, A[4] == '1')
  if add then
    if n == 0 then order[#order + 1] = emoji end
    count[emoji] = n + 1
  else
    count[emoji] = n - 1
    if n == 1 then
      for i, e in ipairs(order) do
        if e == emoji then table.remove(order, i); break end
      end
    end
    redis.call('HDEL', rx, uf)
  end
  local o, counts = encode(order, count)
  -- The user's own emoji, for "me".
  local mine = split(h[8])
  if add then
    mine[#mine + 1] = emoji
  else
    for i, e in ipairs(mine) do
      if e == emoji then table.remove(mine, i); break end
    end
  end
  if add then
    redis.call('HSET', rx, 'v', version, 'o', o, 'j', counts, uf, version, 'm:' .. user, table.concat(mine, '\31'))
  else
    redis.call('HSET', rx, 'v', version, 'o', o, 'j', counts, 'm:' .. user, table.concat(mine, '\31'))
  end
  local ttl = tonumber(A[13])
  if ttl > 0 then redis.call('PEXPIRE', rx, ttl) end
  memo.len[K[2]] = len + 1
  add_reaction(K[2], id, '{"emoji":' .. emoji .. ',"user_id":' .. A[11] .. ',"op":"' .. A[8] ..
    '","reactions":' .. counts .. ',"reactions_version":' .. version .. '}', h[2], private)
  return {0, tonumber(version), 1, counts}
end
