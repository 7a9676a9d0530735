-- no-transaction
-- dialect sqlite
DROP INDEX IF EXISTS customers_rollout_probe;
-- dialect postgres
DROP INDEX CONCURRENTLY IF EXISTS customers_rollout_probe;
-- dialect end
