-- Proration. What each subscription item was charged for which interval is kept, because a
-- change in the middle of a period credits what was actually charged for the unused time, never
-- a list price (docs/billing.md). A proration charge not yet on an invoice waits here for the
-- next one (`invoice_id` NULL).
--
-- Credits go to the customer's credit balance, per currency, and are applied to the next
-- invoices finalized: `customer_credits` is the balance, `credit_transactions` its history.
-- dialect postgres
-- The references to subscriptions and customers lock those tables briefly: never wait long.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE subscription_charges (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    subscription_id TEXT    NOT NULL,
    item_id         TEXT    NOT NULL,
    price_id        TEXT    NOT NULL,
    quantity        BIGINT  NOT NULL CHECK (quantity >= 1),
    description     TEXT    NOT NULL,
    -- Pre-tax, for [period_start, period_end).
    amount          BIGINT  NOT NULL CHECK (amount >= 0),
    period_start    BIGINT  NOT NULL,
    period_end      BIGINT  NOT NULL,
    -- Given back so far by proration credits.
    credited        BIGINT  NOT NULL DEFAULT 0,
    -- The end of the time the charge still pays for: a credit from t cuts its tail at t.
    covered_until   BIGINT  NOT NULL,
    invoice_id      TEXT,
    created         BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    CHECK (period_end > period_start),
    CHECK (credited >= 0 AND credited <= amount)
);
CREATE INDEX subscription_charges_by_subscription ON subscription_charges (subscription_id, period_end);

CREATE TABLE customer_credits (
    tenant_id   TEXT    NOT NULL,
    customer_id TEXT    NOT NULL,
    currency    TEXT    NOT NULL,
    balance     BIGINT  NOT NULL CHECK (balance >= 0),
    PRIMARY KEY (tenant_id, customer_id, currency),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);

CREATE TABLE credit_transactions (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    customer_id     TEXT    NOT NULL,
    currency        TEXT    NOT NULL,
    -- Positive: credit granted; negative: credit applied to an invoice.
    amount          BIGINT  NOT NULL CHECK (amount <> 0),
    balance_after   BIGINT  NOT NULL CHECK (balance_after >= 0),
    description     TEXT    NOT NULL,
    subscription_id TEXT,
    invoice_id      TEXT,
    created         BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id)
);
CREATE INDEX credit_transactions_by_customer ON credit_transactions (tenant_id, customer_id, id);
