-- Must be refused: a type change rewrites the table under an exclusive lock.
SET LOCAL lock_timeout = '5s';
ALTER TABLE invoices ALTER COLUMN total TYPE NUMERIC;
