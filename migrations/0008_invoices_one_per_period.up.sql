-- no-transaction
-- dialect sqlite
CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_per_period ON invoices (subscription_id, period_start);
-- dialect postgres
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS invoices_one_per_period ON invoices (subscription_id, period_start);
-- dialect end
