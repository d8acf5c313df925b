-- The flusher's statements (service/flusher/pg_side.py loads them by name).
-- One transaction per batch: COPY into a TEMP staging table, then one guarded upsert.

-- name: create_flush_stage
-- Created once per connection, emptied by ON COMMIT DELETE ROWS.
CREATE TEMP TABLE IF NOT EXISTS flush_stage (
    bucket integer NOT NULL, tenant text NOT NULL, namespace text NOT NULL,
    epoch integer NOT NULL, value bigint NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_flush_stage
-- Text format: snapshot.lua builds the rows, and names of [A-Za-z0-9_-] need no escaping.
COPY flush_stage (bucket, tenant, namespace, epoch, value) FROM STDIN;

-- name: upsert
-- The guard only ever raises (epoch, value): replaying a batch is a no-op.
-- ORDER BY: rows are locked in key order, the same in every transaction (no deadlock
-- even without the partition ownership), and index pages are visited in order.
INSERT INTO counters AS c (bucket, tenant, namespace, epoch, value, updated_at)
SELECT bucket, tenant, namespace, epoch, value, now() FROM flush_stage
ORDER BY bucket, tenant, namespace
ON CONFLICT (bucket, tenant, namespace) DO UPDATE
SET epoch = EXCLUDED.epoch, value = EXCLUDED.value, updated_at = EXCLUDED.updated_at
WHERE (c.epoch, c.value) < (EXCLUDED.epoch, EXCLUDED.value);

-- name: ahead
-- Rows the guard skipped because PostgreSQL is ahead of what Redis holds. LATERAL ...
-- LIMIT 1 keeps it one primary-key lookup per staged row (with run-time partition
-- pruning): as a plain join the planner hashes the whole counters table.
SELECT s.bucket, s.tenant, s.namespace, c.epoch, c.value
FROM flush_stage s CROSS JOIN LATERAL (
    SELECT epoch, value FROM counters
    WHERE bucket = s.bucket AND tenant = s.tenant AND namespace = s.namespace LIMIT 1
) c
WHERE (c.epoch, c.value) > (s.epoch, s.value);

-- name: take_over
-- Holders of a partition's lock whose session has waited on its client for longer than
-- the lease: idle (between statements), or active but waiting to read or write the client
-- (a COPY FROM STDIN left open), since that state began. That is a flusher stopped or hung
-- mid-pass; one whose query is running is never taken. Terminating the backend ends its
-- lock and its transaction, so the stuck flusher can never commit later.
-- MATERIALIZED: the holders are chosen first, only then is any of them terminated.
WITH stuck AS MATERIALIZED (
    SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
      AND l.classid = %(cls)s::oid AND l.objid = %(part)s::oid
      AND a.pid <> pg_backend_pid()
      AND (a.state <> 'active' OR a.wait_event_type = 'Client')
      AND a.state_change < now() - make_interval(secs => %(lease)s)
)
SELECT pid FROM stuck WHERE pg_terminate_backend(pid);

-- name: try_lock_many
-- pg_try_advisory_lock is volatile: evaluated once per partition, in order.
SELECT p FROM unnest(%(parts)s::int[]) AS p WHERE pg_try_advisory_lock(%(cls)s, p);

-- name: unlock_many
SELECT pg_advisory_unlock(%(cls)s, p) FROM unnest(%(parts)s::int[]) AS p;

-- name: lineages
SELECT bucket, lineage FROM bucket_lineages WHERE bucket = ANY(%s) ORDER BY bucket, seq;

-- name: accept_lineage
INSERT INTO bucket_lineages (bucket, seq, lineage)
SELECT %(bucket)s, coalesce(max(seq), 0) + 1, %(lineage)s
FROM bucket_lineages WHERE bucket = %(bucket)s
ON CONFLICT DO NOTHING;

-- name: create_settle_stage
CREATE TEMP TABLE IF NOT EXISTS settle_stage (
    bucket integer NOT NULL, tenant text NOT NULL, namespace text NOT NULL,
    epoch integer NOT NULL, base bigint NOT NULL
) ON COMMIT DELETE ROWS;

-- name: copy_settle_stage
COPY settle_stage (bucket, tenant, namespace, epoch, base) FROM STDIN;

-- name: settle_amounts
-- Where PostgreSQL holds more than a counter's (epoch, base): the epoch to take and the
-- amount settle.lua adds (value - base; below 0 only with a newer epoch, a lost reset).
SELECT s.bucket, s.tenant, s.namespace, s.epoch, c.epoch, c.value - s.base
FROM settle_stage s CROSS JOIN LATERAL (
    SELECT epoch, value FROM counters
    WHERE bucket = s.bucket AND tenant = s.tenant AND namespace = s.namespace LIMIT 1
) c
WHERE (c.epoch, c.value) > (s.epoch, s.base);

-- name: read_rows
-- Stored rows of some buckets, of one tenant or all (counterctl verify).
SELECT bucket, tenant, namespace, epoch, value FROM counters
WHERE bucket = ANY(%(buckets)s) AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s);

-- name: session_settings
-- Once per connection. A mark is cleared only after a durable commit; the waits of
-- `counterctl flush --once` for a busy partition are bounded.
SET synchronous_commit = on; SET lock_timeout = '60s'; SET statement_timeout = '120s';

-- name: try_lock
SELECT pg_try_advisory_lock(%s, %s);

-- name: lock
SELECT pg_advisory_lock(%s, %s);

-- name: unlock
SELECT pg_advisory_unlock(%s, %s);
