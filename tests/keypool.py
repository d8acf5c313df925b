"""API keys made ahead of the tests that use them.

A worker learns of a new key through LISTEN/NOTIFY within about a second, not at
the instant it is committed; a test that used a key made a millisecond earlier
would race that. The pool makes keys in batches, one transaction each, and waits
``SETTLE`` seconds once per batch, so every running service (in process or a
gunicorn subprocess) holds a key before a test gets it.
"""

from __future__ import annotations

import time
import uuid

import psycopg

from service.api.keyset import KeySet
from service.apikeys import hash_key, new_key
from tests.helpers import wait_for_key

BATCH = 100
SETTLE = 1.0  # seconds; measured propagation is a few ms (README, "Security model")


class KeyPool:
    def __init__(self, dsn: str, watch: KeySet | None = None) -> None:
        """``watch``: this process's key set, waited for before ``SETTLE`` (it may be
        reconnecting after a test stopped PostgreSQL)."""
        self.dsn = dsn
        self.watch = watch
        self._free: dict[str, list[tuple[str, str]]] = {}

    def take(self, prefix: str = "t") -> tuple[str, str]:
        """A fresh tenant named ``prefix…`` and its key (scope increment, unlimited)."""
        free = self._free.setdefault(prefix, [])
        if not free:
            free.extend(self._make(prefix))
            if self.watch is not None:
                wait_for_key(self.watch, free[0][1], timeout=30)
            time.sleep(SETTLE)
        return free.pop()

    def _make(self, prefix: str) -> list[tuple[str, str]]:
        made = [(f"{prefix}{uuid.uuid4().hex[:12]}", new_key()) for _ in range(BATCH)]
        with psycopg.connect(self.dsn) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO api_keys (tenant, key_hash, prefix) VALUES (%s, %s, %s)",
                [(tenant, hash_key(key), key[:10]) for tenant, key in made],
            )
        return made
