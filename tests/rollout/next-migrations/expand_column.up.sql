-- The rollout test's version N+1 (never released): an expand-only change. A new nullable column
-- needs only a brief lock, bounded here so it never queues behind a long transaction.
-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE customers ADD COLUMN rollout_probe TEXT;
