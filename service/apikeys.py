"""API keys: created as high-entropy random strings, stored only as SHA-256.

The plaintext is returned once, at creation. Lookups hash the presented key and
compare hashes, so a database leak does not leak usable keys.

A key carries a scope (``read`` < ``increment`` < ``admin``: each allows what the
one before it does) and an optional rate limit (requests per second and a burst;
none means unlimited). Every change to a row is announced on the PostgreSQL
channel ``api_keys`` (migration 004) so API workers, which hold the active keys in
memory, apply it within about a second.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any, NamedTuple

import psycopg

from service import queries
from service.keys import is_valid_tenant

KEY_PREFIX = "ck_"
KEY_FORMAT = re.compile(r"ck_[A-Za-z0-9_-]{43}")  # token_urlsafe(32): 43 characters
SCOPES = {"read": 0, "increment": 1, "admin": 2}  # each allows what those below allow
DEFAULT_SCOPE = "increment"
MAX_RATE = 1e6  # requests per second; GCRA works in µs, so 1 µs per request at most


class KeyRecord(NamedTuple):
    """A key as ``counterctl keys list`` shows it: never the key itself."""

    id: int
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    scope: str
    rate: float | None
    burst: int | None


class Grant(NamedTuple):
    """What an active key may do: what a worker holds in memory per key hash."""

    key_id: int
    tenant: str
    scope: str
    rate: float | None  # requests per second; None = unlimited
    burst: int | None


def is_well_formed(key: str) -> bool:
    """The shape ``new_key`` makes: checked before any lookup, so garbage costs nothing."""
    return len(key) == 46 and KEY_FORMAT.fullmatch(key) is not None


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def new_key() -> str:
    """256 bits of randomness, URL-safe, with a recognisable prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def check_limits(rate: float | None, burst: int | None) -> tuple[float | None, int | None]:
    """Validated ``(rate, burst)``; ``burst`` defaults to one second's worth of ``rate``."""
    if rate is None:
        if burst is not None:
            raise ValueError("--burst needs --rate")
        return None, None
    if not 0 < rate <= MAX_RATE or math.isnan(rate):
        raise ValueError(f"rate must be > 0 and <= {MAX_RATE:g} requests per second")
    burst = max(1, math.ceil(rate)) if burst is None else burst
    if not 1 <= burst <= 2**31 - 1:
        raise ValueError("burst must be at least 1")
    return rate, burst


_SQL = queries.load("service", "apikeys.sql")  # "create" and "list" return KeyRecord fields


def create_key(
    dsn: str,
    tenant: str,
    scope: str = DEFAULT_SCOPE,
    rate: float | None = None,
    burst: int | None = None,
) -> tuple[KeyRecord, str]:
    if not is_valid_tenant(tenant):
        raise ValueError("tenant must be 1–32 chars of letters, digits, '-' or '_'")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    rate, burst = check_limits(rate, burst)
    key = new_key()
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            _SQL["create"], (tenant, hash_key(key), key[:10], scope, rate, burst)
        ).fetchone()
    assert row is not None
    return KeyRecord(*row), key


def update_limits(dsn: str, key_id: int, rate: float | None, burst: int | None) -> bool:
    """Set (or, with no rate, remove) a key's limit; False when no such active key."""
    rate, burst = check_limits(rate, burst)
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(_SQL["update_limits"], (rate, burst, key_id))
        return cur.rowcount == 1


def list_keys(dsn: str, tenant: str | None = None) -> list[KeyRecord]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(_SQL["list"], {"t": tenant}).fetchall()
    return [KeyRecord(*row) for row in rows]


def revoke_key(dsn: str, key_id: int) -> bool:
    """True when a live key was revoked now; False when unknown or already revoked."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(_SQL["revoke"], (key_id,))
        return cur.rowcount == 1


def _grants(rows: Iterable[Any]) -> dict[bytes, Grant]:
    return {bytes(h): Grant(int(i), t, s, r, b) for h, i, t, s, r, b in rows}


def active_keys(conn: psycopg.Connection[Any]) -> dict[bytes, Grant]:
    """Every active key: the full load and the periodic resync of a worker."""
    return _grants(conn.execute(_SQL["active"]).fetchall())


def active_keys_among(conn: psycopg.Connection[Any], ids: list[int]) -> dict[bytes, Grant]:
    """Those of ``ids`` still active: what a worker reads after a notification."""
    return _grants(conn.execute(_SQL["active_among"], (ids,)).fetchall())


def listen(conn: psycopg.Connection[Any]) -> None:
    """Follow every change to a key (migration 004 NOTIFYs its id)."""
    conn.execute(_SQL["listen"])
