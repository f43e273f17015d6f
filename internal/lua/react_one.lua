-- react_one.lua: one toggle (react.lua's contract: KEYS and ARGV as its K and A).
return react(KEYS, ARGV)
