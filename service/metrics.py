"""Prometheus metrics, correct under several gunicorn workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gunicorn_conf`` does it), every worker
writes its samples to files there and ``/metrics`` adds them up across workers.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    generate_latest,
    multiprocess,
)

INCREMENTS = Counter("counter_increments_total", "Increments acknowledged with a 200")
HYDRATIONS = Counter(
    "counter_hydrations_total", "Counters seeded into Redis from PostgreSQL (missing in Redis)"
)
ERRORS = Counter("counter_http_errors_total", "Error responses by status", ["status"])


def render() -> tuple[bytes, str]:
    """Exposition text of all workers' metrics, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
