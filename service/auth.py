"""API key → tenant, cached per worker.

PERF: the hot path never touches PostgreSQL for a known key; entries live for
``ttl`` seconds, so a revoked key stops working within ``ttl`` (default 10 s).
Unknown keys are cached the same way, so a flood of bad keys cannot flood the
database; a key created after a failed attempt works within ``ttl`` too.
"""

from __future__ import annotations

import time

from service.apikeys import hash_key
from service.errors import Unauthorized
from service.pg import Database

HEADER = "REQUIEMS-API-KEY"
MAX_ENTRIES = 100_000
MISSING = "Missing API key: send it in the requiems-api-key header"
INVALID = "Invalid or revoked API key"


class Authenticator:
    def __init__(self, db: Database, ttl: float) -> None:
        self.db = db
        self.ttl = ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    def tenant_for(self, key: str | None) -> str:
        """The tenant owning ``key``; raises Unauthorized (401) otherwise."""
        if not key:
            raise Unauthorized(MISSING)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or hit[1] <= now:
            hit = (self.db.tenant_for_key_hash(hash_key(key)), now + self.ttl)
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = hit
        if hit[0] is None:
            raise Unauthorized(INVALID)
        return hit[0]
