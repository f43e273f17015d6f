-- delconsumer.lua: delete a consumer only when nothing is pending for it and it has been idle
-- long enough; checked and done in one step, so no entry can become pending in between.
-- KEYS[1] flush stream
-- ARGV[1] group  ARGV[2] consumer  ARGV[3] minimum idle time in ms
-- Returns 1 when deleted, 0 when kept (pending entries, recently active, or unknown).
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['name'] == ARGV[2] then
    if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[3]) then
      redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
      return 1
    end
    return 0
  end
end
return 0
