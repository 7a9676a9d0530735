-- no-transaction
-- The past-due subscriptions: the billing cycle checks whether each is settled without reading
-- the others.
-- dialect sqlite
CREATE INDEX IF NOT EXISTS subscriptions_past_due ON subscriptions (id) WHERE status = 'past_due';
-- dialect postgres
-- An interrupted concurrent build leaves an invalid index behind; `migrate run` refuses to start
-- while one exists (and names it), so IF NOT EXISTS only ever skips a valid one.
CREATE INDEX CONCURRENTLY IF NOT EXISTS subscriptions_past_due ON subscriptions (id) WHERE status = 'past_due';
-- dialect end
