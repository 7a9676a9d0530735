-- Must be refused: a type change rewrites the table under an exclusive lock; NOT NULL without a
-- default breaks the running version's inserts.
SET LOCAL lock_timeout = '5s';
ALTER TABLE invoices ALTER COLUMN total TYPE NUMERIC;
ALTER TABLE customers ADD COLUMN tier TEXT NOT NULL;
