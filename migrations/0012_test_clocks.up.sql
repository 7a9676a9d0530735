-- Test clocks (as Stripe's): a customer created on a clock lives in the clock's time. Its
-- subscriptions are billed when the clock is advanced, never by the billing cycle, so tests and
-- users simulate months of billing without waiting (docs/billing.md).
-- dialect postgres
-- The column added to customers takes a brief lock on it: never wait long for it.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE test_clocks (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL,
    name        TEXT,
    frozen_time BIGINT  NOT NULL,
    created     BIGINT  NOT NULL,
    UNIQUE (tenant_id, id)
);
-- Set at creation only. No index: the clock's subscriptions are looked up per clock by the
-- (test-only) advance, through the tenant's customers.
ALTER TABLE customers ADD COLUMN test_clock_id TEXT;
