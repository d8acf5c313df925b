-- API keys' statements (service/apikeys.py loads them by name). A key is stored only as
-- its hash; its record (what `counterctl keys list` shows) never holds the key.

-- name: create
INSERT INTO api_keys (tenant, key_hash, prefix, scope, rate, burst)
VALUES (%s, %s, %s, %s, %s, %s)
RETURNING id, tenant, prefix, created_at, revoked_at, scope, rate, burst;

-- name: update_limits
UPDATE api_keys SET rate = %s, burst = %s WHERE id = %s AND revoked_at IS NULL;

-- name: list
-- Every key of one tenant, or of all (a NULL tenant), revoked ones included.
SELECT id, tenant, prefix, created_at, revoked_at, scope, rate, burst FROM api_keys
WHERE %(t)s::text IS NULL OR tenant = %(t)s ORDER BY id;

-- name: revoke
UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL;

-- name: active
-- Every active key: a worker's full load and its periodic resync.
SELECT key_hash, id, tenant, scope, rate, burst FROM api_keys WHERE revoked_at IS NULL;

-- name: active_among
-- Those of some ids still active: what a worker reads after a notification.
SELECT key_hash, id, tenant, scope, rate, burst FROM api_keys
WHERE revoked_at IS NULL AND id = ANY(%s);

-- name: listen
-- Migration 004's trigger announces every change to a key on this channel (payload: its id).
LISTEN api_keys;
