-- A contract step taken without its expand step: renaming a column the running version reads and
-- writes. scripts/test-compat.sh applies it to show that the N-1 gate fails on such a migration.
ALTER TABLE customers RENAME COLUMN email TO email_address;
