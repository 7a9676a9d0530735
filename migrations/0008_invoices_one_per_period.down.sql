-- dialect sqlite
DROP INDEX IF EXISTS invoices_one_per_period;
-- dialect postgres
DROP INDEX CONCURRENTLY IF EXISTS invoices_one_per_period;
-- dialect end
