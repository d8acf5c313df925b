-- The migration runner's own statements (service/migrate.py loads them by name); the
-- migrations themselves are the files of migrations/, applied in name order.

-- name: lock
-- One migrator at a time (counterctl rebucket takes the same lock).
SELECT pg_advisory_lock(%s);

-- name: unlock
SELECT pg_advisory_unlock(%s);

-- name: create_history
CREATE TABLE IF NOT EXISTS schema_migrations
    (name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());

-- name: applied
SELECT name FROM schema_migrations;

-- name: layout
-- What a migration reads for the layout: the bucket count and the partition count.
SELECT set_config('counter.buckets', %s, true), set_config('counter.partitions', %s, true);

-- name: record
INSERT INTO schema_migrations (name) VALUES (%s);

-- name: meta_value
-- What the first migration recorded of the layout: 'buckets' or 'partitions'.
SELECT value FROM meta WHERE key = %s;
