"""The PostgreSQL adapter: a lazily opened pool and every query the API needs.

Reads only: hydration of a counter missing from Redis. API keys are not looked
up per request (``service.api.keyset`` holds them in memory); counters are written
by the flusher.

Every connection has libpq's ``connect_timeout`` and a server-side
``statement_timeout``; under meinheld the pool is ``CoopPool`` (``pg_coop``),
whose connects and waits go through the loop with deadlines. During an outage a
query fails at once instead of waiting for a timeout again, so the requests that
need PostgreSQL fail fast while the increments of counters in Redis go on. After
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
from contextlib import AbstractContextManager
from typing import Any

import psycopg
from psycopg.errors import ConnectionTimeout, QueryCanceled
from psycopg_pool import ConnectionPool, PoolTimeout

from service import queries
from service.errors import BackendUnavailable
from service.fastpath.coop import LoopHooks
from service.fastpath.pg_coop import CoopPool, with_timeouts
from service.logs import OutageLog
from service.settings import Settings

log = logging.getLogger("counter.pg")
_SQL = queries.load("service.api", "counters.sql")
UNAVAILABLE = "Database unavailable, retry later"
RETRY_AFTER = 1.0  # seconds of immediate 503s after a failure, per worker
PROBE_TIMEOUT = 0.05  # seconds a query waits for a connection while PostgreSQL is down
# Seconds a try after a broken connection waits for the pool's new one. After a
# restart that is a fork and an authentication on a server just out of recovery:
# 0.5 s was too short once on a loaded CI machine (a 503 right after the restart).
RECONNECT_TIMEOUT = 2.0


class Database:
    """Owns the pool; opened on first use so no socket exists before gunicorn forks."""

    def __init__(
        self,
        dsn: str,
        max_size: int,
        timeout: float = 5.0,
        connect_timeout: float = Settings.pg_connect_timeout,  # the defaults live in Settings
        statement_timeout: float = Settings.pg_statement_timeout,
        hooks: LoopHooks | None = None,
    ) -> None:
        self.dsn = with_timeouts(dsn, connect_timeout, statement_timeout)
        self._max_size = max_size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._io_timeout = statement_timeout + 1.0  # the server's own timeout fires first
        self._pool: ConnectionPool[Any] | CoopPool | None = None
        self._lock = threading.Lock()
        self._outage = OutageLog(log, "postgres")
        self._retry_at = 0.0  # monotonic time before which a query fails without trying
        self._hooks = hooks  # meinheld's loop: connects and reads wait through it

    @property
    def pool(self) -> ConnectionPool[Any] | CoopPool:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    hooks = self._hooks
                    if hooks is not None:
                        self._pool = CoopPool(
                            self.dsn,
                            self._max_size,
                            hooks,
                            self._connect_timeout,
                            self._io_timeout,
                        )
                    else:
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
        if isinstance(pool, CoopPool) and not self._in_request():
            tries = tries[:1]  # outside a request nothing may park: one blocking try
        error = ""
        for timeout in tries:
            try:
                with self._connection(pool, timeout) as conn:
                    row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
            except (PoolTimeout, ConnectionTimeout, QueryCanceled) as exc:
                # No connection or no answer in time: another try would wait as long.
                error = type(exc).__name__
                break
            except psycopg.OperationalError:  # the pool drops the broken connection
                error = "OperationalError"  # the name only: messages may hold a DSN
                continue
            self._outage.ok()
            return row
        raise self._failure(error)

    def _connection(
        self, pool: ConnectionPool[Any] | CoopPool, timeout: float
    ) -> AbstractContextManager[psycopg.Connection[Any]]:
        if isinstance(pool, CoopPool) and not self._in_request():
            return psycopg.connect(self.dsn, autocommit=True)
        return pool.connection(timeout=timeout)

    def _in_request(self) -> bool:
        return self._hooks is not None and self._hooks.in_request()

    def _failure(self, error: str) -> BackendUnavailable:
        self._outage.failed(error)
        self._retry_at = time.monotonic() + RETRY_AFTER
        return BackendUnavailable("postgres", UNAVAILABLE)

    def read_counter(self, bucket: int, tenant: str, namespace: str) -> tuple[int, int]:
        """``(epoch, value)`` of the stored row, ``(0, 0)`` when there is none."""
        row = self._fetchone(_SQL["read_counter"], (bucket, tenant, namespace))
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def read_info(self, bucket: int, tenant: str, namespace: str) -> tuple[Any, ...] | None:
        """``(epoch, value, created_at, updated_at)`` of the stored row, None without one."""
        return self._fetchone(_SQL["read_info"], (bucket, tenant, namespace))

    def ping(self) -> bool:
        try:
            return self._fetchone(_SQL["ping"], ()) is not None
        except BackendUnavailable:
            return False
