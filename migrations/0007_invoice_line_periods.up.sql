-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE invoice_lines ADD COLUMN price_id TEXT;
ALTER TABLE invoice_lines ADD COLUMN period_start BIGINT;
ALTER TABLE invoice_lines ADD COLUMN period_end BIGINT;
