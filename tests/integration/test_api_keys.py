"""API keys at rest: PostgreSQL holds only their SHA-256 and a short prefix, never the key."""

from __future__ import annotations

import hashlib

import psycopg

from service.apikeys import create_key


def test_postgresql_stores_only_the_sha256_of_a_key(pg_dsn: str) -> None:
    record, key = create_key(pg_dsn, "sha-only")
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute(
            "SELECT key_hash, prefix, row_to_json(k)::text FROM api_keys k WHERE id = %s",
            (record.id,),
        ).fetchone()
    assert row is not None
    key_hash, prefix, whole_row = row
    assert bytes(key_hash) == hashlib.sha256(key.encode()).digest()
    assert prefix == key[:10] == record.prefix  # shown by `counterctl keys list`
    assert key not in whole_row and key[10:] not in whole_row  # no column holds the rest
