-- API keys carry a scope and an optional rate limit, and every change to a key is
-- announced on the channel `api_keys` so that API workers, which hold the active keys
-- in memory, apply it within about a second (service/api/keyset.py). The payload is the
-- key's id; a worker reads that row again. Idempotent: every statement may run again.

ALTER TABLE api_keys
    ADD COLUMN IF NOT EXISTS scope text NOT NULL DEFAULT 'increment'
        CHECK (scope IN ('read', 'increment', 'admin')),
    ADD COLUMN IF NOT EXISTS rate double precision CHECK (rate > 0),   -- requests per second
    ADD COLUMN IF NOT EXISTS burst integer CHECK (burst >= 1);         -- requests at once

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'api_keys_rate_and_burst') THEN
        -- both or neither: NULL means unlimited
        ALTER TABLE api_keys ADD CONSTRAINT api_keys_rate_and_burst
            CHECK ((rate IS NULL) = (burst IS NULL));
    END IF;
END $$;

CREATE OR REPLACE FUNCTION api_keys_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- Delivered at commit, to every listening worker; a rolled back change sends nothing.
    PERFORM pg_notify('api_keys', (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END)::text);
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS api_keys_changed ON api_keys;
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION api_keys_notify();
