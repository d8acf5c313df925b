-- counterctl rebucket's statements (service/ops/rebucket.py loads them by name), all in
-- one transaction. A {} is a list of column names filled in by psycopg.sql (the live
-- table's columns, so a later migration's column moves too).

-- name: exclusive
-- No migrate meanwhile (its advisory lock).
SELECT pg_advisory_xact_lock(%s);

-- name: lock_timeout
-- A session still using the table fails the table lock within 10 s instead of waiting.
SET LOCAL lock_timeout = '10s';

-- name: lock_counters
LOCK TABLE counters IN ACCESS EXCLUSIVE MODE;

-- name: columns
-- Every column of counters but the bucket, in table order.
SELECT attname FROM pg_attribute WHERE attrelid = 'counters'::regclass
  AND attnum > 0 AND NOT attisdropped AND attname <> 'bucket' ORDER BY attnum;

-- name: copy_rows_out
CREATE TEMP TABLE rebucket_rows ON COMMIT DROP AS SELECT {} FROM counters;

-- name: create_new_buckets
CREATE TEMP TABLE rebucket_to (tenant text, namespace text, bucket int) ON COMMIT DROP;

-- name: names
SELECT tenant, namespace FROM rebucket_rows;

-- name: copy_new_buckets
COPY rebucket_to FROM STDIN;

-- name: forget_lineages
-- repartition.sql widens bucket_lineages' bucket column; Redis is emptied after.
TRUNCATE bucket_lineages;

-- name: copy_rows_back
INSERT INTO counters (bucket, {cols}) SELECT t.bucket, {src} FROM rebucket_rows r
JOIN rebucket_to t USING (tenant, namespace);

-- name: count_rows
SELECT count(*) FROM rebucket_rows;

-- name: record_buckets
UPDATE meta SET value = %s WHERE key = 'buckets';
