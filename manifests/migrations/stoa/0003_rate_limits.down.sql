ALTER TABLE apis DROP COLUMN rate_limit_per_minute;
