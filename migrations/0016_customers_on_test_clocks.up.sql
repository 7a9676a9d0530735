-- no-transaction
-- The customers on a test clock: the billing cycle leaves their subscriptions to their clock,
-- and asks at each claim whether the subscription's customer is one of them. Without this small
-- index the question read every customer, once per subscription billed.
-- dialect sqlite
CREATE INDEX IF NOT EXISTS customers_on_test_clocks ON customers (tenant_id, id) WHERE test_clock_id IS NOT NULL;
-- dialect postgres
-- An interrupted concurrent build leaves an invalid index behind; `migrate run` refuses to start
-- while one exists (and names it), so IF NOT EXISTS only ever skips a valid one.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_on_test_clocks ON customers (tenant_id, id) WHERE test_clock_id IS NOT NULL;
-- dialect end
