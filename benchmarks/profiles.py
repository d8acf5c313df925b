"""Run profiles: how long each point runs and which worker counts are tried.

``quick`` is for CI and a first look (about two minutes, ratios only trustworthy
to ~10-20% on a shared machine); ``full`` is the one to quote (8 s points like
the reference measurements, every worker count, three rounds, longer latency
points).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    duration: int  # seconds of each measured wrk point (wrk takes whole seconds)
    warmup: int  # seconds of unmeasured wrk load before the first point of a server
    workers: tuple[int, ...]  # worker counts tried per configuration; the best is kept
    rounds: int  # interleaved rounds of the sweep; each configuration's median is kept
    latency_duration: float  # seconds of each open-loop latency point
    latency_fractions: tuple[float, ...]  # offered load as fractions of the measured max
    latency_rounds: int  # open-loop windows per point; the one with the median p99 is shown
    flush_lag_duration: int  # seconds of max-load wrk run while sampling flush lag
    memory_counters: int  # counters created for the Redis memory measurement
    scale_counters: int  # also this many on a throwaway cluster (0: not measured)
    all_workloads: bool  # hot/GET workloads for every configuration, or for the service only
    equal_workers: int = 2  # the "same worker count" every configuration is compared at
    threads: int = 2  # wrk -t
    connections: int = 64  # wrk -c, and the open-loop generator's connection count
    namespaces: int = 1000  # namespaces of the "spread" workload
    deadline_s: int = 900  # the whole run is aborted (and cleaned up) after this
    scale_fill_s: int = 600  # the scale fill stops here and reports a partial fill
    # the scale fill again at the bucket count docs/deploying.md advises for it (0: not)
    scale_sized_buckets: int = 0


PROFILES = {
    "quick": Profile(
        name="quick",
        duration=2,
        warmup=1,
        workers=(2, 4),
        rounds=2,
        latency_duration=1.5,
        latency_fractions=(0.25, 0.5, 0.75),
        latency_rounds=1,
        flush_lag_duration=3,
        memory_counters=100_000,
        scale_counters=0,
        all_workloads=False,
        deadline_s=600,
    ),
    "full": Profile(
        name="full",
        duration=8,
        warmup=2,
        workers=(2, 3, 4, 6),
        rounds=3,
        latency_duration=10.0,
        latency_fractions=(0.25, 0.5, 0.75),
        # One 10 s window's p99 at half load spread 4-58 ms between identical windows
        # (docs/performance.md, 2026-12-03): three, and the median, make it a measurement.
        latency_rounds=3,
        flush_lag_duration=15,
        memory_counters=100_000,
        scale_counters=10_000_000,  # ~2.5 min and ~2.2 GB of Redis on a 2-core machine
        scale_sized_buckets=32_767,  # docs/deploying.md's choice for ~2-16M counters
        all_workloads=True,
        deadline_s=3000,
    ),
}
