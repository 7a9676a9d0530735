-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
DROP TABLE usage_charges;
-- dialect sqlite
DROP TRIGGER prices_fixed;
CREATE TRIGGER prices_fixed BEFORE UPDATE OF product_id, currency, interval_unit, interval_count,
    billing_scheme, unit_amount, tiers_mode, tiers, version, previous_version, created ON prices
BEGIN SELECT RAISE(ABORT, 'a price''s amounts never change: create a new version'); END;
-- dialect postgres
CREATE OR REPLACE FUNCTION prices_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
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
-- dialect end
ALTER TABLE subscriptions DROP COLUMN metered;
ALTER TABLE subscription_items DROP COLUMN usage_billed_until;
ALTER TABLE prices DROP COLUMN transform_round;
ALTER TABLE prices DROP COLUMN transform_divide_by;
ALTER TABLE prices DROP COLUMN meter_id;
ALTER TABLE prices DROP COLUMN usage_type;
