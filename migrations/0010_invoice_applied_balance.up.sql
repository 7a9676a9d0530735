-- The customer's credit applied to an invoice when it was finalized: what is left to pay is
-- `total - applied_balance - amount_paid`.
-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE invoices ADD COLUMN applied_balance BIGINT NOT NULL DEFAULT 0;
