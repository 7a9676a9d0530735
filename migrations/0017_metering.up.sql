-- Usage metering: meters, the events they read, and the rollups invoices are made from.
--
-- Exactly once: an event's identifier is claimed in `meter_event_ids` by the transaction that
-- stores the event and adds it to the rollups, so a failed write claims nothing and its retry
-- counts once. The identifiers have a table of their own because on PostgreSQL the events are
-- partitioned by time, and a partitioned table's unique keys must include the partition key:
-- there, (tenant, identifier, timestamp) would let one identifier in twice at two timestamps.
-- dialect postgres
-- The reference to tenants locks that table briefly (SHARE ROW EXCLUSIVE): never wait long.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE meters (
    id             TEXT    PRIMARY KEY,
    tenant_id      TEXT    NOT NULL REFERENCES tenants (id),
    event_name     TEXT    NOT NULL,
    display_name   TEXT,
    aggregation    TEXT    NOT NULL CHECK (aggregation IN ('count', 'sum', 'max', 'unique_count', 'latest')),
    -- A JSON path (`$.tokens`); NULL for `count`.
    value_property TEXT,
    -- A JSON array of JSON paths.
    group_by       TEXT    NOT NULL DEFAULT '[]',
    created        BIGINT  NOT NULL,
    UNIQUE (tenant_id, id),
    CHECK ((aggregation = 'count') = (value_property IS NULL))
);

CREATE TABLE meter_event_ids (
    tenant_id  TEXT NOT NULL,
    identifier TEXT NOT NULL,
    PRIMARY KEY (tenant_id, identifier)
);

-- The events as received (properties as JSON text), kept to explain and recompute the rollups.
-- On PostgreSQL they are partitioned by month of `occurred` (Unix seconds); the service makes
-- the partitions ahead of time (`store::partitions`), and the default partition takes what
-- falls outside them.
CREATE TABLE meter_events (
    tenant_id   TEXT   NOT NULL,
    identifier  TEXT   NOT NULL,
    event_name  TEXT   NOT NULL,
    customer_id TEXT   NOT NULL,
    occurred    BIGINT NOT NULL,
    properties  TEXT   NOT NULL,
    received    BIGINT NOT NULL
-- dialect postgres
) PARTITION BY RANGE (occurred);
CREATE TABLE meter_events_default PARTITION OF meter_events DEFAULT;
-- dialect sqlite
);
-- dialect end

-- What the accepted events add up to, per meter, customer, minute and group: usage over a
-- period reads these, never the events. `latest_*` is the event with the greatest
-- (occurred, identifier).
CREATE TABLE meter_rollups (
    tenant_id    TEXT   NOT NULL,
    meter_id     TEXT   NOT NULL,
    customer_id  TEXT   NOT NULL,
    minute       BIGINT NOT NULL,
    group_key    TEXT   NOT NULL,
    events       BIGINT NOT NULL,
    value_sum    BIGINT NOT NULL,
    value_max    BIGINT NOT NULL,
    latest_at    BIGINT NOT NULL,
-- Identifiers order by their bytes, as on SQLite and in the service: which of two events of
-- the same second is the latest must not depend on the database's locale.
-- dialect postgres
    latest_id    TEXT   COLLATE "C" NOT NULL,
-- dialect sqlite
    latest_id    TEXT   NOT NULL,
-- dialect end
    latest_value BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, meter_id, customer_id, minute, group_key)
);

-- The distinct values a `unique_count` meter saw, once per minute and group.
CREATE TABLE meter_distinct_values (
    tenant_id   TEXT   NOT NULL,
    meter_id    TEXT   NOT NULL,
    customer_id TEXT   NOT NULL,
    minute      BIGINT NOT NULL,
    group_key   TEXT   NOT NULL,
    value       TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, meter_id, customer_id, minute, group_key, value)
);
