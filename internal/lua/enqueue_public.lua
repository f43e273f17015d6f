-- enqueue_public.lua: accept one public message (common.lua is prepended).
-- KEYS[1] rate settings hash  KEYS[2] fixed-window counter  KEYS[3] GCRA state
-- KEYS[4] client_msg_id record  KEYS[5] id counter  KEYS[6] flush stream  KEYS[7] public ring
-- ARGV[1] message JSON  ARGV[2] ring size  ARGV[3] backlog cap  ARGV[4] client id TTL (s)
-- ARGV[5] "1" when a client_msg_id is given  ARGV[6..8] default limit, window (s), algorithm
-- ARGV[9] entry kind  ARGV[10] "1" when a WAIT follows (a retry then writes, see admit)
-- ARGV[11] "1" for clock-floored ids (see accept)
-- Returns {0, id, stream id} accepted, {1, id} retry of an accepted message,
-- {2, retry after ms} rate limited, {3} backlog full.
local rejected, take = admit(KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
if rejected then return rejected end
take()
local id, entry = accept(KEYS[5])
push(KEYS[7], entry, tonumber(ARGV[2]))
return {0, id, publish(KEYS[6], KEYS[4], id, entry)}
