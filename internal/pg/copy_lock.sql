-- Taken before a COPY. ROW EXCLUSIVE is what the COPY takes anyway; taking it first, in its own
-- statement, makes the transaction wait for a deletion in progress (it holds SHARE ROW
-- EXCLUSIVE, lock.sql) before tombstones.sql reads the tombstones, so that query sees every
-- deletion committed before the COPY can run.
LOCK TABLE {{.Name}} IN ROW EXCLUSIVE MODE
