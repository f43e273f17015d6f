-- unring.lua: remove deleted messages from list rings (ring.lua is prepended); the workers run it
-- once PostgreSQL has applied a private deletion that ingest could not place in the rings.
-- KEYS list rings  ARGV cache ids (each removed from every ring)
-- Returns the number of entries removed.
local removed = 0
for _, key in ipairs(KEYS) do
  for _, id in ipairs(ARGV) do
    removed = removed + unring(key, id)
  end
end
return removed
