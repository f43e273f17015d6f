-- deadletter.lua: move one entry to the dead-letter stream, atomically with its ack.
-- KEYS[1] flush stream  KEYS[2] dead-letter stream
-- ARGV[1] group  ARGV[2] the entry's id  ARGV[3..] field, value, … of the dead letter
-- Returns 1 when dead-lettered, 0 when the entry was no longer pending (another consumer
-- handled it first): then nothing is added, so a zombie consumer cannot double a dead letter.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local fv = {}
for i = 3, #ARGV do fv[#fv + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fv))
return 1
