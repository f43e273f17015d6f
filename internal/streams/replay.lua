-- replay.lua: put one dead letter back on its flush stream, atomically with its removal from
-- the dead-letter stream, so that it is neither lost nor replayed twice. Every field of the
-- original entry goes back, whatever it is (package streams knows no entry schema); the fields
-- the dead-lettering added are named by the caller and left behind.
-- KEYS[1] dead-letter stream  KEYS[2] flush stream
-- ARGV[1] the dead letter's id  ARGV[2..] the dead-letter fields to leave behind
-- Returns the new flush-stream entry id, or "" when no such dead letter exists.
local e = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then return '' end
local meta = {}
for i = 2, #ARGV do meta[ARGV[i]] = true end
local f, fv = e[1][2], {}
for i = 1, #f, 2 do
  if not meta[f[i]] then
    fv[#fv + 1] = f[i]
    fv[#fv + 1] = f[i + 1]
  end
end
if #fv == 0 then fv = {'cache_id', ''} end -- nothing but metadata: the worker dead-letters it again
local id = redis.call('XADD', KEYS[2], '*', unpack(fv))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
