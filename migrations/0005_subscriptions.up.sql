-- Subscriptions: a customer billed every period for one or more prices. The period bounds and
-- the anchor they are counted from are stored (in the subscription's time zone, snapshotted at
-- creation), so that every replica and every run bills the same periods.
-- dialect postgres
-- The references to customers and prices lock those tables briefly: never wait long.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE subscriptions (
    id                   TEXT    PRIMARY KEY,
    tenant_id            TEXT    NOT NULL,
    customer_id          TEXT    NOT NULL,
    status               TEXT    NOT NULL CHECK (status IN ('trialing', 'active', 'past_due', 'paused', 'canceled')),
    currency             TEXT    NOT NULL,
    time_zone            TEXT    NOT NULL,
    -- The local date and time periods are counted from, e.g. 2025-01-31T00:00:00.
    anchor               TEXT    NOT NULL,
    anchor_fixed         BIGINT  NOT NULL CHECK (anchor_fixed IN (0, 1)),
    interval_unit        TEXT    NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
    interval_count       BIGINT  NOT NULL CHECK (interval_count >= 1),
    period_index         BIGINT  NOT NULL,
    current_period_start BIGINT  NOT NULL,
    current_period_end   BIGINT  NOT NULL,
    trial_end            BIGINT,
    cancel_at_period_end BIGINT  NOT NULL DEFAULT 0 CHECK (cancel_at_period_end IN (0, 1)),
    canceled_at          BIGINT,
    ended_at             BIGINT,
    collection_method    TEXT    NOT NULL CHECK (collection_method IN ('charge_automatically', 'send_invoice')),
    days_until_due       BIGINT,
    -- When the scheduler next has work here (the current period's end); NULL once nothing will
    -- fall due (canceled).
    next_action_at       BIGINT,
    metadata             TEXT    NOT NULL DEFAULT '{}',
    created              BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CHECK (current_period_end > current_period_start)
);
CREATE INDEX subscriptions_due ON subscriptions (next_action_at, id) WHERE next_action_at IS NOT NULL;
CREATE INDEX subscriptions_by_customer ON subscriptions (tenant_id, customer_id, id);
CREATE INDEX subscriptions_by_status ON subscriptions (tenant_id, status, id);

CREATE TABLE subscription_items (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    subscription_id TEXT    NOT NULL,
    price_id        TEXT    NOT NULL,
    quantity        BIGINT  NOT NULL CHECK (quantity >= 1 AND quantity <= 1000000),
    created         BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    FOREIGN KEY (tenant_id, price_id) REFERENCES prices (tenant_id, id)
);
CREATE INDEX subscription_items_by_subscription ON subscription_items (subscription_id, id);
