"""Retry pacing and outage reporting for the flusher loop.

A backend that is down is retried with capped exponential backoff (with jitter,
so several flushers do not reconnect in lockstep), and its state is logged once
per change (up → down, down → up) instead of once per failed attempt, by the same
``OutageLog`` the API uses.
"""

from __future__ import annotations

import logging
import random

from service.flusher.metrics import FAILURES, UP
from service.logs import OutageLog

log = logging.getLogger("counter.flusher")
BASE = 0.5  # seconds before the first retry
CAP = 30.0  # seconds between retries at most


class Backoff:
    """Delays ``base, 2·base, 4·base, …`` up to ``cap`` seconds, each with ±``jitter``."""

    def __init__(self, base: float = BASE, cap: float = CAP, jitter: float = 0.1) -> None:
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * float(2 ** min(self.failures, 62)))
        self.failures += 1
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.failures = 0


class BackendStatus:
    """Whether each backend ("redis", "postgres") works: an ``OutageLog`` per backend,
    plus the flusher's failure and up/down metrics."""

    def __init__(self) -> None:
        self._outages: dict[str, OutageLog] = {}

    def _outage(self, backend: str) -> OutageLog:
        outage = self._outages.get(backend)
        if outage is None:
            outage = self._outages[backend] = OutageLog(
                log,
                backend,
                down=", flushing paused; retrying with backoff",
                up=", flushing resumed",
                down_level=logging.ERROR,
                up_level=logging.WARNING,
            )
        return outage

    def failed(self, backend: str, error: BaseException) -> bool:
        """Record a failure; True (and one log line) when the backend was up until now."""
        FAILURES.labels(backend).inc()
        UP.labels(backend).set(0)
        return self._outage(backend).failed(repr(error))

    def worked(self, *backends: str) -> None:
        """Record success; one log line for each backend that was down."""
        for backend in backends:
            UP.labels(backend).set(1)
            self._outage(backend).ok()
