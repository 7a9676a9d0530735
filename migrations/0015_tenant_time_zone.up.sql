-- A tenant's default time zone for the period boundaries of its subscriptions (those created
-- without a `time_zone`); NULL: UTC.
-- dialect postgres
-- The column added to tenants takes a brief lock on it: never wait long for it.
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE tenants ADD COLUMN time_zone TEXT;
