-- dialect sqlite
DROP INDEX IF EXISTS subscriptions_past_due;
-- dialect postgres
DROP INDEX CONCURRENTLY IF EXISTS subscriptions_past_due;
-- dialect end
