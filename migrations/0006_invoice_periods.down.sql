ALTER TABLE invoices DROP COLUMN billing_reason;
ALTER TABLE invoices DROP COLUMN period_end;
ALTER TABLE invoices DROP COLUMN period_start;
ALTER TABLE invoices DROP COLUMN subscription_id;
