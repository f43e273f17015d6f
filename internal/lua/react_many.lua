-- react_many.lua: toggles applied in order in one call, each exactly as react_one.lua applies
-- it (the toggles of concurrent requests, coalesced): every toggle's KEYS are react.lua's K, 8
-- a toggle, and its ARGV its A, 19 a toggle. Returns react.lua's four values for each toggle,
-- in order. Every key of the call is in one slot (ingest coalesces only there).
local out, n = {}, #KEYS / 8
for i = 0, n - 1 do
  local r = react({unpack(KEYS, i * 8 + 1, i * 8 + 8)}, {unpack(ARGV, i * 19 + 1, i * 19 + 19)})
  for k = 1, 4 do out[#out + 1] = r[k] end
end
return out
