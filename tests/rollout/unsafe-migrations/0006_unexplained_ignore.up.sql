-- Must be refused: a rule set aside without a reason.
SET LOCAL lock_timeout = '5s';
-- squawk-ignore require-concurrent-index-creation
CREATE INDEX customers_by_name ON customers (name);
