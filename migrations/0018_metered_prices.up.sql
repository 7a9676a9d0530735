-- Metered prices: a price with `usage_type` 'metered' bills what its meter counted for the
-- customer over each period, in arrears, instead of a quantity in advance. What each window of
-- usage was billed is kept in `usage_charges` (one row per invoice line), so a late event for a
-- window already invoiced is billed on the next invoice as the difference (docs/billing.md).
-- dialect postgres
-- Adding columns with constant defaults rewrites nothing; never wait long for the locks.
SET LOCAL lock_timeout = '5s';
-- dialect end
ALTER TABLE prices ADD COLUMN usage_type TEXT NOT NULL DEFAULT 'licensed';
ALTER TABLE prices ADD COLUMN meter_id TEXT;
-- Package pricing (Stripe's `transform_quantity`): units are billed in packages of divide_by,
-- rounded 'up' or 'down'.
ALTER TABLE prices ADD COLUMN transform_divide_by BIGINT;
ALTER TABLE prices ADD COLUMN transform_round TEXT;
-- Up to when a metered item's usage has been billed (NULL: from when the item was added).
ALTER TABLE subscription_items ADD COLUMN usage_billed_until BIGINT;
-- Whether the subscription has ever had a metered item: only those look for usage to bill.
ALTER TABLE subscriptions ADD COLUMN metered BIGINT NOT NULL DEFAULT 0;

CREATE TABLE usage_charges (
    id              TEXT    PRIMARY KEY,
    tenant_id       TEXT    NOT NULL,
    subscription_id TEXT    NOT NULL,
    item_id         TEXT    NOT NULL,
    price_id        TEXT    NOT NULL,
    meter_id        TEXT    NOT NULL,
    -- The window of usage billed, [period_start, period_end), counted to the minute.
    period_start    BIGINT  NOT NULL,
    period_end      BIGINT  NOT NULL,
    -- The meter's value over the window when this row was written.
    usage           BIGINT  NOT NULL,
    -- 'usage' (a window billed), 'adjustment' (more of a window billed later), or 'credit' (a
    -- window's amount went down: credited to the customer's balance, never on an invoice).
    kind            TEXT    NOT NULL CHECK (kind IN ('usage', 'adjustment', 'credit')),
    description     TEXT    NOT NULL,
    quantity        BIGINT  NOT NULL CHECK (quantity >= 1),
    unit_amount     BIGINT  NOT NULL,
    -- The invoice that bills it; NULL while waiting for the next one (never set for a credit).
    invoice_id      TEXT,
    created         BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, subscription_id) REFERENCES subscriptions (tenant_id, id),
    CHECK (period_end > period_start),
    CHECK ((kind = 'credit') = (unit_amount < 0))
);
CREATE INDEX usage_charges_by_subscription ON usage_charges (subscription_id, period_end);

-- What a price charges is fixed for ever: its meter and packages too.
-- dialect sqlite
DROP TRIGGER prices_fixed;
CREATE TRIGGER prices_fixed BEFORE UPDATE OF product_id, currency, interval_unit, interval_count,
    billing_scheme, unit_amount, tiers_mode, tiers, version, previous_version, created,
    usage_type, meter_id, transform_divide_by, transform_round ON prices
BEGIN SELECT RAISE(ABORT, 'a price''s amounts never change: create a new version'); END;
-- dialect postgres
CREATE OR REPLACE FUNCTION prices_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.product_id, NEW.currency, NEW.interval_unit, NEW.interval_count, NEW.billing_scheme,
        NEW.unit_amount, NEW.tiers_mode, NEW.tiers, NEW.version, NEW.previous_version, NEW.created,
        NEW.usage_type, NEW.meter_id, NEW.transform_divide_by, NEW.transform_round)
       IS DISTINCT FROM
       (OLD.product_id, OLD.currency, OLD.interval_unit, OLD.interval_count, OLD.billing_scheme,
        OLD.unit_amount, OLD.tiers_mode, OLD.tiers, OLD.version, OLD.previous_version, OLD.created,
        OLD.usage_type, OLD.meter_id, OLD.transform_divide_by, OLD.transform_round) THEN
        RAISE EXCEPTION 'a price''s amounts never change: create a new version';
    END IF;
    RETURN NEW;
END;
$$;
-- dialect end
