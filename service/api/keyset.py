"""The active API keys of one worker, held in memory and kept current from PostgreSQL.

PERF: authentication is a dict lookup; a request never waits on the database, and
a flood of made-up keys costs PostgreSQL nothing.

A daemon thread of the worker (never the event loop, which must not block) owns a
plain blocking psycopg connection of its own::

    connect ─▶ LISTEN api_keys ─▶ full load ─▶ follow ──(connection lost)──▶ wait, retry
                                                 │ a notification (a key's id): read those
                                                 │   rows again, publish
                                                 │ every ``resync`` s (±10%): full load
                                                 ▼   again, in case one was missed

Listening starts before the full load, so a change committed during the load is
read again after it. Each change publishes a new dict by swapping one reference
(atomic under the GIL): requests read ``keys`` without a lock and never see half an
update. While PostgreSQL is unreachable the last published set keeps serving;
reconnecting does a full load, which catches up on what changed meanwhile. Until
the first load succeeds ``keys`` is None and requests with a key get 503.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from service.apikeys import Grant, active_keys, active_keys_among, listen
from service.fastpath.pg_coop import with_timeouts
from service.logs import OutageLog

log = logging.getLogger("counter.keys")
RETRY_MIN, RETRY_MAX = 0.5, 5.0  # seconds between reconnects, doubling
POLL = 1.0  # seconds a wait for notifications lasts before checking for close()
COALESCE = 0.002  # seconds to gather a burst of notifications into one update
FULL_RELOAD_AT = 1000  # this many keys changed at once: load them all instead


class KeySet:
    """Active key hash → ``Grant``, published by a background thread."""

    def __init__(
        self,
        dsn: str,
        resync: float = 60.0,
        connect_timeout: float = 2.0,
        statement_timeout: float = 10.0,
    ) -> None:
        self.keys: dict[bytes, Grant] | None = None  # None until the first load
        # TCP keepalives and a user timeout: a PostgreSQL host that vanishes (no RST) is
        # noticed in about 30 s instead of the kernel's ~15 min, then the thread reconnects.
        self._dsn = make_conninfo(
            with_timeouts(dsn, connect_timeout, statement_timeout),
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
            tcp_user_timeout=30_000,
        )
        self._resync = resync
        self._ids: dict[int, bytes] = {}  # the thread's own: key id -> hash in ``keys``
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = OutageLog(log, "api key sync", down=": the keys loaded before keep serving")

    def start(self) -> KeySet:
        """Start the thread (once; in the worker, after fork)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="api-keys", daemon=True)
            self._thread.start()
        return self

    def wait_loaded(self, timeout: float) -> bool:
        """Block up to ``timeout`` s for the first load: only outside the event loop."""
        return self._loaded.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = RETRY_MIN
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    listen(conn)
                    self._load_all(conn)
                    delay = RETRY_MIN
                    self._follow(conn)
            except psycopg.Error as exc:  # the name only: a message may hold the DSN
                self._outage.failed(type(exc).__name__)
            except Exception as exc:  # never let the thread die: keys would freeze
                log.error("api key sync failed", extra={"error": type(exc).__name__})
            self._stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX)

    def _follow(self, conn: psycopg.Connection[Any]) -> None:
        resync_at = self._next_resync()
        while not self._stop.is_set():
            wait = max(0.0, min(POLL, resync_at - time.monotonic()))
            ids = {n.payload for n in conn.notifies(timeout=wait, stop_after=1)}
            if ids:
                ids |= {n.payload for n in conn.notifies(timeout=COALESCE)}
                self._apply(conn, [int(i) for i in ids if i.isdigit()])
            if time.monotonic() >= resync_at:
                self._load_all(conn)
                resync_at = self._next_resync()

    def _next_resync(self) -> float:
        # Jitter: the workers of a fleet do not all reload in the same second.
        return time.monotonic() + self._resync * random.uniform(0.9, 1.1)

    def _load_all(self, conn: psycopg.Connection[Any]) -> None:
        keys = active_keys(conn)
        self._ids = {g.key_id: h for h, g in keys.items()}
        self._publish(keys)
        if not self._loaded.is_set():
            self._loaded.set()
            log.info("api keys loaded", extra={"keys": len(keys)})

    def _apply(self, conn: psycopg.Connection[Any], ids: list[int]) -> None:
        if len(ids) >= FULL_RELOAD_AT or self.keys is None:
            self._load_all(conn)
            return
        fresh = active_keys_among(conn, ids)
        keys = dict(self.keys)
        for key_id in ids:  # revoked, deleted or changed: drop the old entry first
            old = self._ids.pop(key_id, None)
            if old is not None:
                keys.pop(old, None)
        for key_hash, grant in fresh.items():
            keys[key_hash] = grant
            self._ids[grant.key_id] = key_hash
        self._publish(keys)

    def _publish(self, keys: dict[bytes, Grant]) -> None:
        self.keys = keys  # one reference swap: readers see the old set or the new one
        self._outage.ok()
