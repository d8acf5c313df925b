"""Flush lag under load: time from an increment's 200 to its value being in PostgreSQL.

While wrk holds the service at its maximum, a sampler thread sends its own
increments (namespaces ``lag-0..lag-9``, one every ``period`` seconds) and
notes (namespace, returned value, ack time); a poller thread reads those rows
from ``counters`` every ``poll`` seconds and records, for each sample, when a
value >= the acknowledged one is first visible. The lag is what a reader of
PostgreSQL (the system of record) sees: flush interval + batch work + commit.
Resolution is the poll period (10 ms). A sample still not seen when the wait
runs out is not dropped: it ranks above every lag seen (``percentiles.py``), so
a percentile that falls on one reads ``None`` (longer than the wait).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import deque
from typing import Any

import psycopg

from benchmarks.percentiles import percentiles
from service import keys

NAMESPACES = [f"lag-{i}" for i in range(10)]


class FlushLag:
    """``with FlushLag(...) as f: <load>``; then ``f.result()``."""

    def __init__(
        self,
        port: int,
        api_key: str,
        dsn: str,
        tenant: str,
        n_buckets: int,
        period: float = 0.02,
        poll: float = 0.01,
        wait: float = 15.0,
    ) -> None:
        self.port, self.api_key, self.dsn, self.tenant = port, api_key, dsn, tenant
        self.buckets = [keys.bucket_of(tenant, ns, n_buckets) for ns in NAMESPACES]
        self.period, self.poll, self.wait = period, poll, wait
        self.pending: dict[str, deque[tuple[int, float]]] = {ns: deque() for ns in NAMESPACES}
        self.lags: list[float] = []
        self.sent = 0
        self.send_errors = 0
        self._lock = threading.Lock()
        self._sampling = threading.Event()
        self._stop = threading.Event()

    def __enter__(self) -> FlushLag:
        self._threads = [
            threading.Thread(target=f, daemon=True) for f in (self._sample, self._poll)
        ]
        self._sampling.set()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """Stop sampling; keep polling until every sample is seen or ``wait`` runs out."""
        self._sampling.clear()
        deadline = time.monotonic() + (self.wait if exc_type is None else 0.0)
        while time.monotonic() < deadline and any(self.pending.values()):
            time.sleep(0.05)
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _sample(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {"requiems-api-key": self.api_key, "Content-Length": "0"}
        i, next_at = 0, time.monotonic()
        while self._sampling.is_set():
            ns = NAMESPACES[i % len(NAMESPACES)]
            i += 1
            try:
                conn.request("POST", f"/v1/misc/counter/{ns}", headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                ack = time.monotonic()
                if resp.status != 200:
                    raise ValueError(resp.status)
                with self._lock:
                    self.pending[ns].append((int(json.loads(body)["data"]["value"]), ack))
                    self.sent += 1
            except (OSError, ValueError, http.client.HTTPException):
                self.send_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            next_at += self.period
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def _poll(self) -> None:
        sql = (
            "SELECT namespace, value FROM counters WHERE bucket = ANY(%s) AND tenant = %s"
            " AND namespace = ANY(%s)"
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                rows = conn.execute(sql, (self.buckets, self.tenant, NAMESPACES)).fetchall()
                seen = time.monotonic()
                with self._lock:
                    for ns, value in rows:
                        queue = self.pending[ns]
                        while queue and queue[0][0] <= value:
                            self.lags.append(seen - queue.popleft()[1])
                time.sleep(self.poll)

    def result(self, flush_interval: float) -> dict[str, Any]:
        never_seen = sum(len(q) for q in self.pending.values())
        lag = percentiles(self.lags, never_seen, quantiles=(50, 90, 99), digits=4)
        return {
            "samples": self.sent,
            "seen_in_postgres": len(self.lags),
            "never_seen": never_seen,
            "send_errors": self.send_errors,
            "lag_s": lag,
            "flush_interval_s": flush_interval,
            "poll_resolution_s": self.poll,
        }
