-- Where each bucket's counted history comes from (docs/durability.md): one row per
-- lineage the flusher ever accepted for the bucket, numbered in order; the highest
-- number is the bucket's current lineage. Rows of any other lineage are not
-- written (a stale node), and an unseen lineage is settled before it is written.
-- Idempotent.
CREATE TABLE IF NOT EXISTS bucket_lineages (
    bucket      integer NOT NULL CHECK (bucket >= 0),  -- smallint in older ones, as in 001
    seq         integer NOT NULL CHECK (seq > 0),
    lineage     text NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bucket, seq),
    UNIQUE (bucket, lineage)
);
