-- The API's reads of PostgreSQL (service/api/pg.py loads them by name). Each is one
-- primary-key lookup: the bucket prunes the partitions.

-- name: read_counter
-- Hydration of a counter missing from Redis, and reads that miss.
SELECT epoch, value FROM counters WHERE bucket = %s AND tenant = %s AND namespace = %s;

-- name: read_info
SELECT epoch, value, created_at, updated_at FROM counters
WHERE bucket = %s AND tenant = %s AND namespace = %s;

-- name: ping
-- /readyz: a round trip on a pooled connection.
SELECT 1;
