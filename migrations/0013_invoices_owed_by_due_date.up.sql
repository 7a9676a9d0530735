-- no-transaction
-- The invoices of subscriptions still owed, by due date: the billing cycle finds those overdue
-- (their subscription becomes past_due) without reading the others.
-- dialect sqlite
CREATE INDEX IF NOT EXISTS invoices_owed_by_due_date ON invoices (due_date) WHERE status IN ('open', 'uncollectible') AND subscription_id IS NOT NULL;
-- dialect postgres
-- An interrupted concurrent build leaves an invalid index behind; `migrate run` refuses to start
-- while one exists (and names it), so IF NOT EXISTS only ever skips a valid one.
CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_owed_by_due_date ON invoices (due_date) WHERE status IN ('open', 'uncollectible') AND subscription_id IS NOT NULL;
-- dialect end
