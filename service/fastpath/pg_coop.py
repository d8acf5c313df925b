"""PostgreSQL reads that let a meinheld worker serve other requests meanwhile.

A blocking read (hydrating a new counter, a key lookup) parks the whole worker:
every request it holds, most of them Redis-only, waits out the database's round
trip. Under meinheld, ``CoopConnection`` waits for its socket through the event
loop instead, as Redis calls do (``service.fastpath.coop``).

psycopg's pool hands out connections under thread locks, and makes them in
threads whose connects a request would wait for on a thread condition: either
would block the loop. Under meinheld, ``CoopPool`` replaces it: at most ``size``
requests hold a connection at once (``CoopGate``; the others park in order and
give up after a timeout), idle connections are reused, and a new one is made by
the request that needs it, its connect waiting through the loop with a deadline.
Every wait has a deadline: a black-holed PostgreSQL costs a request at most the
connect or statement timeout (plus a second of timer tick), never the worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import pq
from psycopg.abc import PQGen
from psycopg.conninfo import make_conninfo
from psycopg.waiting import WAIT_R, WAIT_W
from psycopg_pool import PoolTimeout

from service.fastpath.coop import LoopHooks

RV = Any


class CoopConnection(psycopg.Connection[Any]):
    """Waits through meinheld's loop when called in a request; blocks elsewhere.

    ``io_timeout`` bounds each wait for the socket: the server's statement_timeout
    cannot fire when the network between is what failed.
    """

    io_timeout = 5.0
    hooks: LoopHooks | None = None  # set by ``connect_through``

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        hooks = self.hooks
        if hooks is None or not hooks.in_request():  # outside a request nothing may park
            return super().wait(gen, interval, timeout)
        fileno = self.pgconn.socket
        try:
            state = next(gen)
            while True:
                hooks.wait_io(fileno, bool(state & WAIT_R), bool(state & WAIT_W), self.io_timeout)
                # Woken for what it waited for; psycopg retries whatever is not ready.
                state = gen.send(state)
        except StopIteration as done:
            return done.value
        except OSError as exc:  # the wait's deadline: the server or the network is gone
            raise psycopg.errors.ConnectionTimeout(f"waiting for PostgreSQL: {exc!r}") from None

    @classmethod
    def connect_through(cls, conninfo: str, hooks: LoopHooks, timeout: float) -> CoopConnection:
        """Connect from a request, waiting through the loop; at most ``timeout`` s or so.

        psycopg's own ``connect`` waits in a selector (blocking); this drives the
        same connection generator (``_connect_gen``) with the loop's waits.
        """
        gen = cls._connect_gen(conninfo)
        deadline = time.monotonic() + timeout
        try:
            fileno, state = next(gen)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise psycopg.errors.ConnectionTimeout("connection timeout expired")
                hooks.wait_io(fileno, bool(state & WAIT_R), bool(state & WAIT_W), left)
                fileno, state = gen.send(state)
        except StopIteration as done:
            conn: CoopConnection = done.value
        except OSError as exc:
            raise psycopg.errors.ConnectionTimeout(f"connecting to PostgreSQL: {exc!r}") from None
        conn._autocommit = True
        conn.hooks = hooks
        return conn


class _Waiter:
    __slots__ = ("owner", "granted")

    def __init__(self, owner: Any) -> None:
        self.owner = owner
        self.granted = False


class CoopGate:
    """At most ``size`` requests of this worker hold a pooled connection at once."""

    def __init__(self, size: int, hooks: LoopHooks) -> None:
        self.free = size
        self.hooks = hooks
        self._waiting: deque[_Waiter] = deque()

    def acquire(self, timeout: float) -> bool:
        """Take a place, parking until one is free; False after ``timeout`` s or so."""
        if self.free > 0:
            self.free -= 1
            return True
        waiter = _Waiter(self.hooks.current())
        self._waiting.append(waiter)
        self.hooks.call_later(timeout, lambda: self._expire(waiter))
        self.hooks.park()
        return waiter.granted

    def release(self) -> None:
        if self._waiting:  # hand the place over
            waiter = self._waiting.popleft()
            waiter.granted = True
            self.hooks.wake(waiter.owner)
        else:
            self.free += 1

    def _expire(self, waiter: _Waiter) -> None:
        """Runs in the loop: wake a waiter still in the queue, empty-handed."""
        if waiter.granted:
            return
        self._waiting.remove(waiter)
        self.hooks.wake(waiter.owner)


class CoopPool:
    """psycopg_pool's ``connection()`` for a meinheld worker: nothing in it blocks the loop."""

    def __init__(
        self, conninfo: str, size: int, hooks: LoopHooks, connect_timeout: float, io_timeout: float
    ) -> None:
        self.conninfo = conninfo
        self.hooks = hooks
        self.connect_timeout = connect_timeout
        self.io_timeout = io_timeout
        self.gate = CoopGate(size, hooks)
        self._idle: list[CoopConnection] = []

    @contextmanager
    def connection(self, timeout: float) -> Iterator[CoopConnection]:
        """A connection for one query; PoolTimeout if none is free within ~``timeout``."""
        if not self.gate.acquire(timeout):
            raise PoolTimeout("no free connection")
        try:
            conn = self._idle.pop() if self._idle else self._connect()
            healthy = False
            try:
                yield conn
                healthy = conn.pgconn.transaction_status == pq.TransactionStatus.IDLE
            finally:
                if healthy:
                    self._idle.append(conn)
                else:  # broken, or left mid-transaction by an error: never reused
                    conn.close()
        finally:
            self.gate.release()

    def _connect(self) -> CoopConnection:
        conn = CoopConnection.connect_through(self.conninfo, self.hooks, self.connect_timeout)
        conn.io_timeout = self.io_timeout
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def with_timeouts(dsn: str, connect_timeout: float, statement_timeout: float) -> str:
    """``dsn`` plus libpq's connect_timeout and a server-side statement_timeout."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    options = str(params.get("options") or "")
    params["connect_timeout"] = max(1, round(connect_timeout))
    params["options"] = f"{options} -c statement_timeout={int(statement_timeout * 1000)}".strip()
    return make_conninfo("", **params)
