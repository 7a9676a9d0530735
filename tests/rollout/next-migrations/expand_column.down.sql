ALTER TABLE customers DROP COLUMN rollout_probe;
