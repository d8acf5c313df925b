"""API key → tenant, cached per worker.

PERF: the hot path never touches PostgreSQL for a known key; entries live for
``ttl`` seconds, so a revoked key stops working within ``ttl`` (default 10 s).
Unknown keys are cached the same way, so a flood of bad keys cannot flood the
database; a key created after a failed attempt works within ``ttl`` too.

While PostgreSQL is unreachable, a worker keeps the answers it has, for up to
``grace`` seconds after each was last confirmed: increments of known tenants go
on in Redis through a database outage instead of failing once ``ttl`` runs out.
A key the worker has not seen gets a 503. Revocation cannot be written during
an outage either; one committed just before it takes effect up to ``grace``
seconds late.
"""

from __future__ import annotations

import time

from service.api.errors import Unauthorized
from service.api.pg import Database
from service.apikeys import hash_key
from service.errors import BackendUnavailable

HEADER = "REQUIEMS-API-KEY"
MAX_ENTRIES = 100_000
MISSING = "Missing API key: send it in the requiems-api-key header"
INVALID = "Invalid or revoked API key"


class Authenticator:
    def __init__(self, db: Database, ttl: float, grace: float) -> None:
        self.db = db
        self.ttl = ttl
        self.grace = grace
        # key -> (tenant or None, check again after, usable during an outage until)
        self._cache: dict[str, tuple[str | None, float, float]] = {}

    def tenant_for(self, key: str | None) -> str:
        """The tenant owning ``key``; raises Unauthorized (401) otherwise.

        Raises BackendUnavailable (503) when the key must be looked up and PostgreSQL does
        not answer.
        """
        if not key:
            raise Unauthorized(MISSING)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or hit[1] <= now:
            try:
                hit = (self.db.tenant_for_key_hash(hash_key(key)), now + self.ttl, now + self.grace)
            except BackendUnavailable:
                if hit is None or hit[2] <= now:
                    raise
                hit = (hit[0], now + min(self.ttl, 1.0), hit[2])  # outage: keep it, ask again
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[key] = hit
        if hit[0] is None:
            raise Unauthorized(INVALID)
        return hit[0]
