-- no-transaction
-- dialect sqlite
CREATE UNIQUE INDEX IF NOT EXISTS invoices_one_per_period ON invoices (subscription_id, period_start);
-- dialect postgres
-- An interrupted concurrent build leaves an invalid index behind; `migrate run` refuses to start
-- while one exists (and names it), so IF NOT EXISTS only ever skips a valid one.
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS invoices_one_per_period ON invoices (subscription_id, period_start);
-- dialect end
