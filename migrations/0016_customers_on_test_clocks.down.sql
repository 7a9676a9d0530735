-- dialect sqlite
DROP INDEX IF EXISTS customers_on_test_clocks;
-- dialect postgres
DROP INDEX CONCURRENTLY IF EXISTS customers_on_test_clocks;
-- dialect end
