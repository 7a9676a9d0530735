-- What each batch of meter events adds to the rollups, appended in the batch's transaction and
-- folded into `meter_rollups` by a worker (`billing::rollups`), so that concurrent batches never
-- wait on one another's rollup rows: every batch of a busy customer adds to the same few minutes.
-- Usage is read from both tables (a row here counts as soon as its batch commits); the worker
-- moves rows, in one transaction, without changing any total.
-- dialect postgres
-- The index is on the table made just above, which nothing else can hold; the bound says so.
SET LOCAL lock_timeout = '5s';
-- dialect end
CREATE TABLE meter_rollup_deltas (
    tenant_id    TEXT   NOT NULL,
    meter_id     TEXT   NOT NULL,
    customer_id  TEXT   NOT NULL,
    minute       BIGINT NOT NULL,
    group_key    TEXT   NOT NULL,
    events       BIGINT NOT NULL,
    value_sum    BIGINT NOT NULL,
    value_max    BIGINT NOT NULL,
    latest_at    BIGINT NOT NULL,
-- The same order as `meter_rollups.latest_id`.
-- dialect postgres
    latest_id    TEXT   COLLATE "C" NOT NULL,
-- dialect sqlite
    latest_id    TEXT   NOT NULL,
-- dialect end
    latest_value BIGINT NOT NULL,
    -- When the batch was received (Unix seconds): how far behind the folding is.
    received     BIGINT NOT NULL
);
CREATE INDEX meter_rollup_deltas_key ON meter_rollup_deltas (tenant_id, meter_id, customer_id, minute, group_key);
