-- no-transaction
-- dialect sqlite
CREATE INDEX IF NOT EXISTS customers_rollout_probe ON customers (rollout_probe);
-- dialect postgres
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_rollout_probe ON customers (rollout_probe);
-- dialect end
