-- The deltas not yet folded are folded first (the statement of `store::meter_rollups::fold`),
-- so that reverting loses no usage.
-- dialect postgres
SET LOCAL lock_timeout = '5s';
LOCK TABLE meter_rollup_deltas IN EXCLUSIVE MODE;
-- dialect end
INSERT INTO meter_rollups (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum,
    value_max, latest_at, latest_id, latest_value)
SELECT * FROM (SELECT DISTINCT tenant_id, meter_id, customer_id, minute, group_key,
    CAST(SUM(events) OVER w AS BIGINT) AS events, CAST(SUM(value_sum) OVER w AS BIGINT) AS value_sum,
    MAX(value_max) OVER w AS value_max, FIRST_VALUE(latest_at) OVER w AS latest_at,
    FIRST_VALUE(latest_id) OVER w AS latest_id, FIRST_VALUE(latest_value) OVER w AS latest_value
    FROM meter_rollup_deltas
    WINDOW w AS (PARTITION BY tenant_id, meter_id, customer_id, minute, group_key
        ORDER BY latest_at DESC, latest_id DESC ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) AS f
WHERE true
ON CONFLICT (tenant_id, meter_id, customer_id, minute, group_key) DO UPDATE SET
    events = meter_rollups.events + excluded.events,
    value_sum = meter_rollups.value_sum + excluded.value_sum,
    value_max = CASE WHEN excluded.value_max > meter_rollups.value_max THEN excluded.value_max ELSE meter_rollups.value_max END,
    latest_value = CASE WHEN (excluded.latest_at > meter_rollups.latest_at OR (excluded.latest_at = meter_rollups.latest_at
        AND excluded.latest_id > meter_rollups.latest_id)) THEN excluded.latest_value ELSE meter_rollups.latest_value END,
    latest_id = CASE WHEN (excluded.latest_at > meter_rollups.latest_at OR (excluded.latest_at = meter_rollups.latest_at
        AND excluded.latest_id > meter_rollups.latest_id)) THEN excluded.latest_id ELSE meter_rollups.latest_id END,
    latest_at = CASE WHEN (excluded.latest_at > meter_rollups.latest_at OR (excluded.latest_at = meter_rollups.latest_at
        AND excluded.latest_id > meter_rollups.latest_id)) THEN excluded.latest_at ELSE meter_rollups.latest_at END;
DROP TABLE meter_rollup_deltas;
