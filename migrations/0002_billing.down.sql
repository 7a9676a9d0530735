DROP TABLE audit_log;
DROP TABLE idempotency_keys;
DROP TABLE customer_balances;
DROP TABLE ledger_entries;
-- dialect postgres
DROP FUNCTION ledger_entries_append_only();
-- dialect end
DROP TABLE refunds;
DROP TABLE payments;
DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP TABLE customers;
DROP TABLE api_keys;
ALTER TABLE tenants DROP COLUMN next_invoice_number;
ALTER TABLE tenants DROP COLUMN invoice_prefix;
