ALTER TABLE invoices DROP COLUMN applied_balance;
