-- When a counter's row was first written, for GET /v1/misc/counter/{ns}/info. The
-- flusher's upsert names its columns, so a new row gets now() and an update keeps it.
-- Rows older than this migration get the time it ran. Idempotent.
ALTER TABLE counters ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
