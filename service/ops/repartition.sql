-- The `counters` table for another bucket count (`counterctl rebucket`), inside its
-- transaction, which sets counter.buckets and counter.partitions and has already
-- copied every row out. Drops the table and creates it again as migrations 001, 002
-- and 005 leave a new database (tests/integration/test_rebucket.py compares the two),
-- with the partitions of the new count. The parent is made again, not only its
-- partitions, because PostgreSQL cannot change the type of a partition key: a
-- database created before 001 made `bucket` an integer holds a smallint (at most
-- 32,767 buckets), and this is where it widens.
DROP TABLE counters;
CREATE TABLE counters (
    bucket     integer NOT NULL CHECK (bucket >= 0),
    tenant     text NOT NULL,
    namespace  text NOT NULL,
    epoch      integer NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    value      bigint NOT NULL CHECK (value >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, tenant, namespace)
) PARTITION BY RANGE (bucket);
ALTER TABLE bucket_lineages ALTER COLUMN bucket TYPE integer;  -- emptied by the caller
DO $$
DECLARE
    n_buckets    int := current_setting('counter.buckets')::int;
    n_partitions int := least(current_setting('counter.partitions')::int, n_buckets);
    lo int;
    hi int;
BEGIN
    FOR i IN 0 .. n_partitions - 1 LOOP
        lo := (i::bigint * n_buckets / n_partitions)::int;
        hi := ((i + 1)::bigint * n_buckets / n_partitions)::int;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF counters FOR VALUES FROM (%s) TO (%s)'
            ' WITH (fillfactor = 70)',
            'counters_p' || lpad(i::text, 2, '0'), lo, hi);
    END LOOP;
END $$;
