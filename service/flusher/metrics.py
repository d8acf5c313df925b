"""Prometheus metrics of the flusher process, served on their own small HTTP port.

The flusher is not a gunicorn worker: it registers in the default registry and
``serve`` exposes it with ``prometheus_client.start_http_server``.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("counter.flusher")

LAG = Gauge(
    "counter_flush_lag_seconds",
    "Age of the oldest dirty mark when the last pass started (how far PostgreSQL is behind)",
)
BATCH = Histogram(
    "counter_flush_batch_size",
    "Counters per flushed batch (one transaction)",
    buckets=(1, 10, 100, 500, 1000, 2000, 5000, 10000, 50000),
)
ROWS = Counter("counter_flush_rows_written_total", "Rows inserted or raised in PostgreSQL")
CLEARED = Counter("counter_flush_marks_cleared_total", "Dirty marks cleared after a commit")
REPAIRS = Counter(
    "counter_flush_repairs_total",
    "Counters of a new lineage raised in Redis by what PostgreSQL held beyond their base",
)
REPAIRED = Counter(
    "counter_flush_repaired_increments_total",
    "Sum of those additions: acknowledged increments Redis had lost",
)
DIRTY = Gauge(
    "counter_flush_dirty_members", "Counters marked dirty (not yet flushed) at the last pass"
)
STALE = Counter(
    "counter_flush_stale_lineage_rows_total",
    "Rows not written: their bucket's lineage was replaced in PostgreSQL (a stale node)",
)
FAILURES = Counter(
    "counter_flush_failures_total", "Flush passes that failed, by backend", ["backend"]
)
UP = Gauge("counter_flush_backend_up", "1 when the last use of the backend worked", ["backend"])
PASS_SECONDS = Histogram("counter_flush_pass_seconds", "Duration of a full flush pass")


def serve(host: str, port: int) -> None:
    """Start the metrics endpoint on ``host:port`` (port 0 = off). A busy port is logged,
    not fatal: flushing matters more than its metrics, and several flushers may share a host."""
    if port == 0:
        return
    try:
        start_http_server(port, addr=host.strip("[]"))
    except OSError as exc:
        log.error("metrics endpoint not started", extra={"port": port, "error": str(exc)})
        return
    log.info("metrics endpoint started", extra={"host": host, "port": port})
