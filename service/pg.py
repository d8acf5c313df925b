"""The PostgreSQL adapter: a lazily opened pool and every query the API needs.

Reads only: hydration of a counter missing from Redis, and API key lookups
(cached by ``service.auth``). Writes of counters belong to the flusher.

During an outage a query fails at once instead of waiting for the pool's
timeout: a meinheld worker blocks while it waits, so 5 s per request needing
PostgreSQL would stall the increments of counters already in Redis too. After
a failure, queries answer 503 without trying for ``RETRY_AFTER``; then one
tries, waiting at most ``PROBE_TIMEOUT`` for a connection, until one succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.errors import Unavailable
from service.logs import OutageLog

log = logging.getLogger("counter.pg")
RETRY_AFTER = 1.0  # seconds of immediate 503s after a failure, per worker
PROBE_TIMEOUT = 0.05  # seconds a query waits for a connection while PostgreSQL is down


class KeyRecord(NamedTuple):
    id: int
    tenant: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


class Database:
    """Owns the pool; opened on first use so no socket exists before gunicorn forks."""

    def __init__(self, dsn: str, max_size: int = 4, timeout: float = 5.0) -> None:
        self.dsn = dsn
        self._max_size = max_size
        self._timeout = timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._outage = OutageLog(log, "postgres")
        self._retry_at = 0.0  # monotonic time before which a query fails without trying

    @property
    def pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    pool: ConnectionPool[Any] = ConnectionPool(
                        self.dsn,
                        min_size=1,
                        max_size=self._max_size,
                        timeout=self._timeout,
                        open=False,
                        kwargs={"autocommit": True},
                    )
                    pool.open(wait=False)
                    self._pool = pool
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        timeout = self._timeout
        if self._outage.down:
            if time.monotonic() < self._retry_at:
                raise Unavailable("Database unavailable, retry later")
            timeout = PROBE_TIMEOUT
        try:
            with self.pool.connection(timeout=timeout) as conn:
                row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._outage.failed(type(exc).__name__)  # the name only: messages may hold a DSN
            self._retry_at = time.monotonic() + RETRY_AFTER
            raise Unavailable("Database unavailable, retry later") from None
        self._outage.ok()
        return row

    def read_counter(self, bucket: int, tenant: str, namespace: str) -> tuple[int, int]:
        """``(epoch, value)`` of the stored row, ``(0, 0)`` when there is none."""
        row = self._fetchone(
            "SELECT epoch, value FROM counters WHERE bucket = %s AND tenant = %s"
            " AND namespace = %s",
            (bucket, tenant, namespace),
        )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def tenant_for_key_hash(self, key_hash: bytes) -> str | None:
        row = self._fetchone(
            "SELECT tenant FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (key_hash,),
        )
        return None if row is None else str(row[0])

    def ping(self) -> bool:
        try:
            return self._fetchone("SELECT 1", ()) is not None
        except Unavailable:
            return False
