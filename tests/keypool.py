"""API keys for tests: made ahead in batches, and the key sets that must hold them.

A worker learns of a new key through LISTEN/NOTIFY within about a second, not at
the instant it is committed; a test that used a key made a millisecond earlier
would race that. ``KeyPool`` makes keys in batches, one transaction per database
(the same key in each, so any backend's database knows it), waits until every key
set of this process holds the batch (one may be reconnecting after a test stopped
PostgreSQL), then ``SETTLE`` seconds more for services in other processes.
"""

from __future__ import annotations

import time
import uuid

import psycopg

from service.api.keyset import KeySet
from service.apikeys import hash_key, new_key
from tests.helpers import wait_for_key

BATCH = 100
SETTLE = 1.0  # seconds; measured propagation is a few ms (docs/security.md)


class KeySets:
    """One running ``KeySet`` per database, started on first use: what a worker holds."""

    def __init__(self) -> None:
        self._sets: dict[str, KeySet] = {}

    def get(self, dsn: str) -> KeySet:
        if dsn not in self._sets:
            keys = self._sets[dsn] = KeySet(dsn).start()
            assert keys.wait_loaded(30), "the API keys did not load"
        return self._sets[dsn]

    def running(self, dsns: list[str]) -> list[KeySet]:
        """Those started on any of ``dsns``."""
        return [keys for dsn, keys in self._sets.items() if dsn in dsns]

    def close(self) -> None:
        for keys in self._sets.values():
            keys.close()


class KeyPool:
    def __init__(self, dsns: list[str], key_sets: KeySets) -> None:
        self.dsns = dsns
        self.key_sets = key_sets
        self._free: dict[str, list[tuple[str, str]]] = {}

    def take(self, prefix: str = "t") -> tuple[str, str]:
        """A fresh tenant named ``prefix…`` and its key: unlimited, scope ``admin`` (a test key
        may do everything; the scope tests make keys of their own)."""
        free = self._free.setdefault(prefix, [])
        if not free:
            made = [(f"{prefix}{uuid.uuid4().hex[:12]}", new_key()) for _ in range(BATCH)]
            for dsn in self.dsns:
                self._insert(dsn, made)
            for keys in self.key_sets.running(self.dsns):
                wait_for_key(keys, made[0][1], timeout=30)
            time.sleep(SETTLE)
            free.extend(made)
        return free.pop()

    @staticmethod
    def _insert(dsn: str, made: list[tuple[str, str]]) -> None:
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO api_keys (tenant, key_hash, prefix, scope)"
                " VALUES (%s, %s, %s, 'admin')",
                [(tenant, hash_key(key), key[:10]) for tenant, key in made],
            )
