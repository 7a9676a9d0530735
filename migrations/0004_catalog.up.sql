-- The catalogue: products and their recurring prices. A price never changes what it charges
-- (its amounts, currency and interval are fixed by a trigger, on both backends): a change is a
-- new version of the price, linked to the one it replaces, so that what a subscription was
-- billed can always be explained from the price it names.
-- dialect postgres
-- The references to tenants lock that table briefly (SHARE ROW EXCLUSIVE): never wait long.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE products (
    id          TEXT    PRIMARY KEY,
    tenant_id   TEXT    NOT NULL REFERENCES tenants (id),
    name        TEXT    NOT NULL,
    description TEXT,
    active      BIGINT  NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    metadata    TEXT    NOT NULL DEFAULT '{}',
    created     BIGINT  NOT NULL,
    UNIQUE (tenant_id, id)
);

CREATE TABLE prices (
    id               TEXT    PRIMARY KEY,
    tenant_id        TEXT    NOT NULL REFERENCES tenants (id),
    product_id       TEXT    NOT NULL,
    currency         TEXT    NOT NULL,
    active           BIGINT  NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    nickname         TEXT,
    interval_unit    TEXT    NOT NULL CHECK (interval_unit IN ('day', 'week', 'month', 'year')),
    interval_count   BIGINT  NOT NULL CHECK (interval_count >= 1),
    billing_scheme   TEXT    NOT NULL CHECK (billing_scheme IN ('per_unit', 'tiered')),
    unit_amount      BIGINT  CHECK (unit_amount >= 0),
    tiers_mode       TEXT    CHECK (tiers_mode IN ('graduated', 'volume')),
    -- JSON array of {up_to, unit_amount, flat_amount}; the last tier's up_to is null.
    tiers            TEXT,
    version          BIGINT  NOT NULL DEFAULT 1,
    previous_version TEXT,
    superseded_by    TEXT,
    metadata         TEXT    NOT NULL DEFAULT '{}',
    created          BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    -- A price has one successor at most: versions form a line, never a tree.
    UNIQUE (tenant_id, previous_version),
    FOREIGN KEY (tenant_id, product_id) REFERENCES products (tenant_id, id),
    CHECK ((billing_scheme = 'per_unit' AND unit_amount IS NOT NULL AND tiers IS NULL AND tiers_mode IS NULL)
        OR (billing_scheme = 'tiered' AND unit_amount IS NULL AND tiers IS NOT NULL AND tiers_mode IS NOT NULL))
);
CREATE INDEX prices_by_product ON prices (tenant_id, product_id, id);

-- What a price charges is fixed for ever.
-- dialect sqlite
CREATE TRIGGER prices_fixed BEFORE UPDATE OF product_id, currency, interval_unit, interval_count,
    billing_scheme, unit_amount, tiers_mode, tiers, version, previous_version, created ON prices
BEGIN SELECT RAISE(ABORT, 'a price''s amounts never change: create a new version'); END;
-- dialect postgres
CREATE FUNCTION prices_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.product_id, NEW.currency, NEW.interval_unit, NEW.interval_count, NEW.billing_scheme,
        NEW.unit_amount, NEW.tiers_mode, NEW.tiers, NEW.version, NEW.previous_version, NEW.created)
       IS DISTINCT FROM
       (OLD.product_id, OLD.currency, OLD.interval_unit, OLD.interval_count, OLD.billing_scheme,
        OLD.unit_amount, OLD.tiers_mode, OLD.tiers, OLD.version, OLD.previous_version, OLD.created) THEN
        RAISE EXCEPTION 'a price''s amounts never change: create a new version';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER prices_fixed BEFORE UPDATE ON prices
    FOR EACH ROW EXECUTE FUNCTION prices_fixed();
-- dialect end
