"""Increments per second through ``POST /v1/misc/counters`` (100 items per request)
beside the same increments sent by redis-py as plain pipelined ``INCRBY`` from one
process (issue 15's goal: ≥ 250,000/s through the batch endpoint on 2 cores).

Both run against the same throwaway 3-master cluster; the service runs with its
flusher, and at the end every increment must be in PostgreSQL (flushed, exact).
``python -m benchmarks.batch_bench [--duration 10] [--batch 100]``; ``make bench`` runs
it too (``batch`` in the results JSON and the last lines it prints). It reports the CPU
each process group spent per increment (µs), which is what bounds the rate on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from redis.cluster import ClusterNode, RedisCluster

from benchmarks.cpu import CpuWindow, pids, tree
from benchmarks.servers import APPS, Server
from benchmarks.stack import Backends, backends
from benchmarks.wrk import run_wrk


def redis_baseline(nodes: str, seconds: float, batch: int, namespaces: int) -> float:
    """INCRBYs per second from one process: redis-py's cluster pipeline, ``batch`` per call."""
    startup = [
        ClusterNode(h, int(p))  # type: ignore[no-untyped-call]
        for h, p in (a.split(":") for a in nodes.split(","))
    ]
    rc = RedisCluster(startup_nodes=startup)
    names = [f"base:{{{i}}}" for i in range(namespaces)]
    done, i = 0, 0
    deadline = time.monotonic() + seconds
    start = time.monotonic()
    while time.monotonic() < deadline:
        pipe = rc.pipeline()  # type: ignore[no-untyped-call]
        for _ in range(batch):
            pipe.incrby(names[i % namespaces], 1)
            i += 7
        pipe.execute()
        done += batch
    rate = done / (time.monotonic() - start)
    rc.close()
    return rate


def flushed_total(dsn: str, tenant: str, timeout: float = 60.0) -> int:
    """The sum of the tenant's counters in PostgreSQL once it stops growing."""
    last, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(
                "SELECT coalesce(sum(value), 0) FROM counters WHERE tenant = %s", (tenant,)
            ).fetchone()
        total = int(row[0]) if row else 0
        if total != last:
            last, stable_since = total, time.monotonic()
        elif time.monotonic() - stable_since > 3:
            return total
        time.sleep(0.5)
    return last


def measure(
    b: Backends,
    workdir: Path,
    duration: int = 10,
    batch: int = 100,
    namespaces: int = 1000,
    connections: int = 16,
    workers: int = 2,
) -> dict[str, Any]:
    """The batch endpoint's increments per second beside redis-py's pipelined INCRBY,
    on backends ``b`` (with their flusher, whose result is checked in PostgreSQL)."""
    os.environ["BENCH_BATCH"] = str(batch)
    spec = next(a for a in APPS if a.name == "service")
    env = {**b.service_env(), "COUNTER_REDIS_TIMEOUT": "5"}
    with psycopg.connect(b.pg_dsn) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(value), 0) FROM counters WHERE tenant = %s", (b.tenant,)
        ).fetchone()
    before = int(row[0]) if row else 0
    with Server(spec, workers, env, workdir) as server:
        groups = {
            "workers": pids(server.worker_pids()),
            "redis": pids(b.redis_pids),
            "postgresql": tree(b.pg_pid),
            "flusher": pids([b.flusher.pid] if b.flusher is not None else []),
        }
        with CpuWindow(groups) as cpu:
            res = run_wrk(
                server.url,
                "post-batch",
                duration=duration,
                threads=2,
                connections=connections,
                api_key=b.api_key,
                namespaces=namespaces,
            )
    ok_requests = res.requests - res.errors["status"]
    batch_rate = res.ok_rps * batch
    # What bounds the rate on a shared machine: CPU per increment of each process group
    # (cores used / increments per second), and the cores other users of the box took.
    per_increment = {
        name: round(cpu.result[name] / batch_rate * 1e6, 2) if batch_rate else None
        for name in (*groups, "loadgen")
    }
    flushed = flushed_total(b.pg_dsn, b.tenant) - before if b.flusher is not None else None
    baseline = redis_baseline(b.redis_nodes, duration, batch, namespaces)
    return {
        "batch_size": batch,
        "namespaces": namespaces,
        "workers": workers,
        "connections": connections,
        "batch_requests_per_s": res.ok_rps,
        "batch_increments_per_s": round(batch_rate),
        "redis_py_pipelined_incrby_per_s": round(baseline),
        "ratio_to_baseline": round(batch_rate / baseline, 2),
        "cpu_us_per_increment": per_increment,
        "other_cores": cpu.result["other"],
        "acknowledged_increments": ok_requests * batch,
        "flushed_to_postgresql": flushed,
        "errors": res.errors,
        "latency_ms": res.latency_ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, backends(Path(tmp)) as b:
        report = measure(
            b,
            Path(tmp),
            args.duration,
            args.batch,
            args.namespaces,
            args.connections,
            args.workers,
        )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
