"""Retry pacing and outage reporting for the flusher loop.

A backend that is down is retried with capped exponential backoff (with jitter,
so several flushers do not reconnect in lockstep), and its state is logged once
per change (up → down, down → up) instead of once per failed attempt.
"""

from __future__ import annotations

import logging
import random

from service.flusher.metrics import FAILURES, UP

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
    """Remembers whether each backend ("redis", "postgres") works; logs transitions only."""

    def __init__(self) -> None:
        self.down: dict[str, str] = {}  # backend -> error of the first failure

    def failed(self, backend: str, error: BaseException) -> bool:
        """Record a failure; True (and one log line) when the backend was up until now."""
        FAILURES.labels(backend).inc()
        UP.labels(backend).set(0)
        if backend in self.down:
            return False
        self.down[backend] = repr(error)
        log.error(
            f"{backend} unavailable, flushing paused; retrying with backoff",
            extra={"backend": backend, "error": repr(error)},
        )
        return True

    def worked(self, *backends: str) -> None:
        """Record success; one log line for each backend that was down."""
        for backend in backends:
            UP.labels(backend).set(1)
            if self.down.pop(backend, None) is not None:
                log.warning(
                    f"{backend} available again, flushing resumed", extra={"backend": backend}
                )
