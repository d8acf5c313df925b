"""API keys: created as high-entropy random strings, stored only as SHA-256.

The plaintext is returned once, at creation. Lookups hash the presented key and
compare hashes, so a database leak does not leak usable keys.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime
from typing import NamedTuple

import psycopg

from service.keys import is_valid_tenant

KEY_PREFIX = "ck_"


class KeyRecord(NamedTuple):
    """A key as ``counterctl keys list`` shows it: never the key itself."""

    id: int
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def new_key() -> str:
    """256 bits of randomness, URL-safe, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(dsn: str, tenant: str) -> tuple[KeyRecord, str]:
    if not is_valid_tenant(tenant):
        raise ValueError("tenant must be 1–32 chars of letters, digits, '-' or '_'")
    key = new_key()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO api_keys (tenant, key_hash, prefix) VALUES (%s, %s, %s)"
            " RETURNING id, tenant, prefix, created_at, revoked_at",
            (tenant, hash_key(key), key[:10]),
        ).fetchone()
    assert row is not None
    return KeyRecord(*row), key


def list_keys(dsn: str, tenant: str | None = None) -> list[KeyRecord]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, tenant, prefix, created_at, revoked_at FROM api_keys"
            " WHERE %(t)s::text IS NULL OR tenant = %(t)s ORDER BY id",
            {"t": tenant},
        ).fetchall()
    return [KeyRecord(*row) for row in rows]


def revoke_key(dsn: str, key_id: int) -> bool:
    """True when a live key was revoked now; False when unknown or already revoked."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
            (key_id,),
        )
        return cur.rowcount == 1
