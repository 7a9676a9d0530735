-- Must be refused: NOT NULL without a default breaks the running version's inserts (they do not
-- name the column).
SET LOCAL lock_timeout = '5s';
ALTER TABLE customers ADD COLUMN tier TEXT NOT NULL;
