-- enqueue_private.lua: accept one private message (common.lua is prepended).
-- KEYS[1..6] as in enqueue_public.lua; KEYS[7] sender's ring  KEYS[8] recipient's ring
-- ARGV and replies as in enqueue_public.lua.
-- A self-DM (both rings the same key) is pushed once.
local rejected, take = admit(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
if rejected then return rejected end
take()
local id, entry = accept(KEYS[5])
local size = tonumber(ARGV[2])
push(KEYS[7], entry, size)
if KEYS[8] ~= KEYS[7] then
  push(KEYS[8], entry, size)
end
return {0, id, publish(KEYS[6], KEYS[4], id, entry)}
