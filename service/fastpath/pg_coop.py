"""PostgreSQL reads that let a meinheld worker serve other requests meanwhile.

A blocking read (hydrating a new counter, a key lookup) parks the whole worker:
every request it holds, most of them Redis-only, waits out the database's round
trip. Under meinheld, ``CoopConnection`` waits for its socket through the event
loop instead, as Redis calls do (``service.coop``).

psycopg's pool hands out connections under thread locks: a request waiting there
would block the loop, and with it the requests holding connections, until the
pool gives up. ``CoopGate`` therefore lets at most as many requests as the pool
holds use it at once; the others park in order, and give up after a timeout.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import psycopg
from psycopg.abc import PQGen
from psycopg.waiting import WAIT_R, WAIT_W

from service.fastpath.coop import LoopHooks

RV = Any


class CoopConnection(psycopg.Connection[Any]):
    """Waits through meinheld's loop when called in a request; blocks elsewhere.

    psycopg's pool builds connections from a class: ``coop_connection_class``
    binds one to the loop's hooks.
    """

    hooks: ClassVar[LoopHooks | None] = None

    def wait(self, gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        hooks = self.hooks
        if hooks is None or not hooks.in_request():  # the pool's threads, the gthread worker
            return super().wait(gen, interval, timeout)
        fileno = self.pgconn.socket
        try:
            state = next(gen)
            while True:
                hooks.wait_io(fileno, bool(state & WAIT_R), bool(state & WAIT_W))
                # Woken for what it waited for; psycopg retries whatever is not ready.
                state = gen.send(state)
        except StopIteration as done:
            return done.value
        except OSError as exc:
            raise psycopg.OperationalError(f"waiting for PostgreSQL: {exc!r}") from None


def coop_connection_class(hooks: LoopHooks) -> type[CoopConnection]:
    """A ``CoopConnection`` class whose connections wait in ``hooks``' loop."""
    return type("CoopConnection", (CoopConnection,), {"hooks": hooks})


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
