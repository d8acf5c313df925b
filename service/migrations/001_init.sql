-- Initial schema. Applied by `counterctl migrate`, which sets counter.buckets and
-- counter.partitions for this transaction from COUNTER_BUCKETS / COUNTER_PARTITIONS.
-- Idempotent: every statement may run again.

CREATE TABLE IF NOT EXISTS meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE IF NOT EXISTS api_keys (
    id         bigserial PRIMARY KEY,
    tenant     text NOT NULL CHECK (tenant ~ '^[A-Za-z0-9_-]{1,32}$'),
    key_hash   bytea NOT NULL UNIQUE,          -- SHA-256 of the key; the key itself is never stored
    prefix     text NOT NULL,                  -- first characters, to tell keys apart in listings
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant);

-- bucket: integer (up to 65,536 buckets). Databases created before that cap hold a
-- smallint (up to 32,767) until `counterctl rebucket` remakes the table (repartition.sql).
CREATE TABLE IF NOT EXISTS counters (
    bucket     integer NOT NULL CHECK (bucket >= 0),
    tenant     text NOT NULL,
    namespace  text NOT NULL,
    epoch      integer NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    value      bigint NOT NULL CHECK (value >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, tenant, namespace)
) PARTITION BY RANGE (bucket);

-- Equal bucket ranges, one partition each: counters_p00 holds buckets [0, n/p).
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
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF counters FOR VALUES FROM (%s) TO (%s)',
            'counters_p' || lpad(i::text, 2, '0'), lo, hi);
    END LOOP;
END $$;

INSERT INTO meta (key, value) VALUES
    ('buckets', current_setting('counter.buckets')),
    ('partitions', current_setting('counter.partitions'))
ON CONFLICT (key) DO NOTHING;
