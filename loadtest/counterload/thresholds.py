"""Service-level thresholds: error ratio and latency percentiles (0 disables one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .invariants import Violation


@dataclass(frozen=True)
class Thresholds:
    max_error_ratio: float = 0.01
    max_p50_ms: float = 0.0
    max_p95_ms: float = 0.0
    max_p99_ms: float = 0.0


@dataclass(frozen=True)
class LoadStats:
    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    rps: float

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    @classmethod
    def from_locust(cls, total: Any) -> LoadStats:
        """From ``environment.stats.total`` (a StatsEntry; aggregated on the master)."""
        pct = total.get_response_time_percentile
        return cls(
            requests=total.num_requests,
            failures=total.num_failures,
            p50_ms=pct(0.50) or 0.0,
            p95_ms=pct(0.95) or 0.0,
            p99_ms=pct(0.99) or 0.0,
            rps=total.total_rps,
        )


def check_thresholds(stats: LoadStats, limits: Thresholds) -> list[Violation]:
    found = []
    if stats.requests == 0:
        found.append(Violation("threshold", "run", "some requests", "none were made"))
    if stats.error_ratio > limits.max_error_ratio:
        found.append(Violation(
            "threshold", "run", f"error ratio <= {limits.max_error_ratio:.4f}",
            f"{stats.error_ratio:.4f} ({stats.failures} of {stats.requests} requests failed)",
        ))  # fmt: skip
    for name, limit, value in (
        ("p50", limits.max_p50_ms, stats.p50_ms),
        ("p95", limits.max_p95_ms, stats.p95_ms),
        ("p99", limits.max_p99_ms, stats.p99_ms),
    ):
        if limit > 0 and value > limit:
            found.append(Violation("threshold", "run", f"{name} <= {limit:g} ms", f"{value:g} ms"))
    return found
