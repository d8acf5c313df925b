"""Slow answers to failed authentication once they come faster than a budget.

A flood of made-up keys is answered from memory (``auth``), but each 401 still costs a
worker ~50 µs of CPU: a closed-loop flooder with 32 connections takes as much CPU
as a valid client and halves the valid throughput on two cores. So each worker
lets ``rate`` failures per second (a burst of one second's worth) be answered at
once, and parks each one beyond that in the loop for ``delay`` seconds (±1 s:
meinheld's timers tick once a second) before its 401. A parked request costs no
CPU, and each flooding connection is held to about one request per ``delay``: the
flood's cost falls to what its connections can send that slowly. A client with a
wrong key still gets its 401, just later; a valid key is never held.

At most ``max_held`` requests are parked per worker (half its connection limit by
default), so held floods cannot take every connection: beyond it a 401 is answered
at once. Only meinheld's loop can park a request; other workers never hold one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from service.api.metrics import AUTH_HELD
from service.fastpath.coop import LoopHooks


class FailureBudget:
    """A token bucket of failed authentications: ``rate`` per second, burst ``rate``."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._tokens = max(rate, 1.0)
        self._at = clock()

    def spend(self) -> bool:
        """Take one failure from the budget; False when it is spent (hold the answer)."""
        now = self._clock()
        cap = max(self.rate, 1.0)
        self._tokens = min(cap, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Tarpit:
    """Holds failed authentications beyond the worker's budget; see the module docstring."""

    def __init__(
        self,
        hooks: LoopHooks | None,
        rate: float,
        delay: float,
        max_held: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._hooks = hooks if rate > 0 and delay > 0 else None
        self._budget = FailureBudget(rate, clock)
        self._delay = delay
        self._max_held = max_held
        self.held = 0  # requests parked right now
        self.total_held = 0  # requests ever parked (tests and metrics read it)

    def failed(self) -> None:
        """Called before a 401 is answered: returns at once or after about ``delay`` s."""
        hooks = self._hooks
        if hooks is None or self._budget.spend() or self.held >= self._max_held:
            return
        if not hooks.in_request():
            return
        self.held += 1
        self.total_held += 1
        AUTH_HELD.inc()
        try:
            hooks.sleep(self._delay)
        finally:
            self.held -= 1
