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

-- Subscriptions billed before this migration: the charge of each item for its current period,
-- read from the lines of the invoice that billed it, so that a change credits it like any other
-- (an item whose price another item of the subscription also has is left out: its lines cannot
-- be told apart, and it is credited nothing for this period).
INSERT INTO subscription_charges (id, tenant_id, subscription_id, item_id, price_id, quantity, description, amount,
    period_start, period_end, credited, covered_until, invoice_id, created)
SELECT 'sch_' || substr(MIN(l.id), 4), i.tenant_id, i.subscription_id, si.id, si.price_id, si.quantity,
       COALESCE(p.nickname, pr.name, si.price_id) || ' × ' || CAST(si.quantity AS TEXT),
       SUM(l.amount), i.period_start, i.period_end, 0, i.period_end, i.id, i.created
FROM invoices i
JOIN subscriptions s ON s.tenant_id = i.tenant_id AND s.id = i.subscription_id
JOIN invoice_lines l ON l.tenant_id = i.tenant_id AND l.invoice_id = i.id
JOIN subscription_items si ON si.tenant_id = i.tenant_id AND si.subscription_id = i.subscription_id
    AND si.price_id = l.price_id
JOIN prices p ON p.tenant_id = si.tenant_id AND p.id = si.price_id
LEFT JOIN products pr ON pr.tenant_id = p.tenant_id AND pr.id = p.product_id
WHERE i.status <> 'void' AND s.status <> 'canceled' AND i.period_end = s.current_period_end
    AND (SELECT COUNT(*) FROM subscription_items x WHERE x.tenant_id = si.tenant_id
         AND x.subscription_id = si.subscription_id AND x.price_id = si.price_id) = 1
GROUP BY i.tenant_id, i.subscription_id, si.id, si.price_id, si.quantity, p.nickname, pr.name, i.period_start,
    i.period_end, i.id, i.created;
