-- The partitions of `counters` for another bucket count (`counterctl rebucket`), inside
-- its transaction, which sets counter.buckets and counter.partitions and has already
-- copied every row out. Drops the partitions and creates them again with the ranges
-- and settings of migrations 001 and 002, for the new count.
DO $$
DECLARE
    part         regclass;
    n_buckets    int := current_setting('counter.buckets')::int;
    n_partitions int := least(current_setting('counter.partitions')::int, n_buckets);
    lo int;
    hi int;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                WHERE inhparent = 'counters'::regclass LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
    FOR i IN 0 .. n_partitions - 1 LOOP
        lo := (i::bigint * n_buckets / n_partitions)::int;
        hi := ((i + 1)::bigint * n_buckets / n_partitions)::int;
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF counters FOR VALUES FROM (%s) TO (%s)'
            ' WITH (fillfactor = 70)',
            'counters_p' || lpad(i::text, 2, '0'), lo, hi);
    END LOOP;
END $$;
