-- dialect sqlite
DROP INDEX IF EXISTS invoices_owed_by_due_date;
-- dialect postgres
DROP INDEX CONCURRENTLY IF EXISTS invoices_owed_by_due_date;
-- dialect end
