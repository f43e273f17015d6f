-- Taken by a deletion before it writes tombstones: SHARE ROW EXCLUSIVE conflicts with the ROW
-- EXCLUSIVE lock of every insert, so the deletion waits for inserts in flight (and then sees
-- their rows) and inserts that start meanwhile wait for it (and then see its tombstones).
-- Without it, an insert and a deletion of one id in concurrent transactions could each miss
-- the other's uncommitted write and leave the deleted row behind.
-- The reaction tables likewise: a reaction written meanwhile would outlive its message.
LOCK TABLE {{.Name}}, {{.Reactions}}, {{.Counts}} IN SHARE ROW EXCLUSIVE MODE
