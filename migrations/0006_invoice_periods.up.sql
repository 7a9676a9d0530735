-- A subscription's invoices name it, the period they bill and why they were made; their lines
-- name the price and period they bill. Nullable: invoices made by hand have none of these.
-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE invoices ADD COLUMN subscription_id TEXT;
ALTER TABLE invoices ADD COLUMN period_start BIGINT;
ALTER TABLE invoices ADD COLUMN period_end BIGINT;
ALTER TABLE invoices ADD COLUMN billing_reason TEXT;
