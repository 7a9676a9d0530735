ALTER TABLE invoice_lines DROP COLUMN period_end;
ALTER TABLE invoice_lines DROP COLUMN period_start;
ALTER TABLE invoice_lines DROP COLUMN price_id;
