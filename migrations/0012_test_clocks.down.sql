ALTER TABLE customers DROP COLUMN test_clock_id;
DROP TABLE test_clocks;
