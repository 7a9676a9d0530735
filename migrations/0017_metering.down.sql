-- dialect postgres
SET LOCAL lock_timeout = '5s';
-- dialect end
-- On PostgreSQL, dropping meter_events drops its partitions with it.
DROP TABLE meter_distinct_values;
DROP TABLE meter_rollups;
DROP TABLE meter_events;
DROP TABLE meter_event_ids;
DROP TABLE meters;
