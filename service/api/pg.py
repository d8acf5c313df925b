"""The PostgreSQL adapter: a lazily opened pool and every query the API needs.

Reads only: hydration of a counter missing from Redis, and API key lookups
(cached by ``service.auth``). Writes of counters belong to the flusher.

During an outage a query fails at once instead of waiting for the pool's
timeout: a meinheld worker blocks while it waits, so 5 s per request needing
PostgreSQL would stall the increments of counters already in Redis too. After
a failure, queries answer 503 without trying for ``RETRY_AFTER``; then one
tries, waiting at most ``PROBE_TIMEOUT`` for a connection, until one succeeds.
A query that fails on a pooled connection (PostgreSQL restarted since it was
opened) is tried again, on the next pooled connection or a new one, before that
counts as an outage: the queries are reads, so another try is safe.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from service.errors import BackendUnavailable
from service.fastpath.coop import LoopHooks
from service.fastpath.pg_coop import CoopGate, coop_connection_class
from service.logs import OutageLog

log = logging.getLogger("counter.pg")
UNAVAILABLE = "Database unavailable, retry later"
RETRY_AFTER = 1.0  # seconds of immediate 503s after a failure, per worker
PROBE_TIMEOUT = 0.05  # seconds a query waits for a connection while PostgreSQL is down
RECONNECT_TIMEOUT = 0.5  # seconds a try after a broken connection waits for another


class Database:
    """Owns the pool; opened on first use so no socket exists before gunicorn forks."""

    def __init__(
        self, dsn: str, max_size: int, timeout: float = 5.0, hooks: LoopHooks | None = None
    ) -> None:
        self.dsn = dsn
        self._max_size = max_size
        self._timeout = timeout
        self._pool: ConnectionPool[Any] | None = None
        self._lock = threading.Lock()
        self._outage = OutageLog(log, "postgres")
        self._retry_at = 0.0  # monotonic time before which a query fails without trying
        self._gate: CoopGate | None = None  # under meinheld: requests in the pool at once
        self._hooks = hooks  # meinheld's loop: reads yield to it

    @property
    def pool(self) -> ConnectionPool[Any]:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    hooks = self._hooks
                    pool: ConnectionPool[Any] = ConnectionPool(
                        self.dsn,
                        connection_class=(
                            psycopg.Connection if hooks is None else coop_connection_class(hooks)
                        ),
                        min_size=1,
                        max_size=self._max_size,
                        timeout=self._timeout,
                        open=False,
                        kwargs={"autocommit": True},
                    )
                    if hooks is not None:
                        self._gate = CoopGate(self._max_size, hooks)
                    pool.open(wait=False)
                    self._pool = pool
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def _fetchone(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        tries: tuple[float, ...]
        if not self._outage.down:
            # Every pooled connection may have died with a restart: one try more
            # than the pool holds reaches a new connection.
            tries = (self._timeout,) + (RECONNECT_TIMEOUT,) * self._max_size
        elif time.monotonic() >= self._retry_at:
            tries = (PROBE_TIMEOUT,)
        else:
            raise BackendUnavailable("postgres", UNAVAILABLE)
        pool = self.pool
        gate = self._gate if self._hooks is not None and self._hooks.in_request() else None
        if gate is not None and not gate.acquire(tries[0]):
            raise self._failure("PoolTimeout")
        error = ""
        try:
            for timeout in tries:
                try:
                    with pool.connection(timeout=timeout) as conn:
                        row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
                except PoolTimeout:  # (an OperationalError too) no connection came in time
                    error = "PoolTimeout"
                    break
                except psycopg.OperationalError:  # the pool drops the broken connection
                    error = "OperationalError"  # the name only: messages may hold a DSN
                    continue
                self._outage.ok()
                return row
        finally:
            if gate is not None:
                gate.release()
        raise self._failure(error)

    def _failure(self, error: str) -> BackendUnavailable:
        self._outage.failed(error)
        self._retry_at = time.monotonic() + RETRY_AFTER
        return BackendUnavailable("postgres", UNAVAILABLE)

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
        except BackendUnavailable:
            return False
