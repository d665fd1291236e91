ALTER TABLE apis ADD COLUMN rate_limit_per_minute integer NOT NULL DEFAULT 600;
