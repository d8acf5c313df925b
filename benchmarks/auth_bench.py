"""Authentication benchmark: what a flood of made-up keys costs, and what a rate limit costs.

Starts its own 3-master Redis Cluster and PostgreSQL (devstack, free local ports),
with ``pg_stat_statements`` loaded so every statement PostgreSQL runs is counted,
makes two keys with ``counterctl`` (one unlimited, one limited at 1,000,000/s with a
burst of 10^9, which never refuses: the limiter's full cost, no 429), starts the
service (gunicorn + meinheld, 2 workers; no flusher: not what is measured here) and
measures, interleaved in rounds on the same machine:

1. valid-key POSTs alone (wrk -t1 -c32, over 1,000 namespaces);
2. the same while a second wrk (-t1 -c32) floods the service with a distinct
   made-up, well-formed key per request (``lua/flood.lua``; every answer a 401),
   counting the statements PostgreSQL ran meanwhile;
3. (2) again against a second service started with the failed-authentication
   tarpit off (``COUNTER_AUTH_FAILURES_PER_S=0``): what the 401s themselves cost;
4. POSTs with the unlimited key, then the limited one (wrk -t2 -c64 each).

On 2 cores the flood's wrk and the workers share the CPU with the valid load: the
tarpit (``service/api/tarpit.py``) is what keeps (2) near (1).
``COUNTER_KEYS_RESYNC`` is set to an hour so a periodic reload cannot land in a
measured window. Nothing here fails on a number.

Run: ``.venv/bin/python -m benchmarks.auth_bench [--duration 5] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.cpu import CpuWindow, PidSource, tree
from benchmarks.servers import APPS, Server
from benchmarks.stack import REPO, _counterctl
from benchmarks.wrk import WrkResult, run_wrk
from devstack import PostgresServer, RedisCluster

SERVICE = next(a for a in APPS if a.name == "service")


def statements(dsn: str) -> int:
    """Statements PostgreSQL has run so far, leaving out these counts themselves."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
            " WHERE query NOT LIKE '%pg_stat_statements%'"
        ).fetchone()
    return int(row[0]) if row else 0


def counted(pg: PostgresServer) -> str:
    """Start ``pg`` with pg_stat_statements loaded; its DSN."""
    dsn = pg.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    pg.restart(mode="fast")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return dsn


def flood_window(
    url: str, dsn: str, key: str, seconds: int, workers: PidSource
) -> tuple[WrkResult, WrkResult, int, float]:
    """Valid-key POSTs while a second wrk floods ``url`` with made-up keys: both
    results, PostgreSQL statements meanwhile, and the workers' CPU seconds."""
    before = statements(dsn)
    with ThreadPoolExecutor(2) as pool, CpuWindow({"workers": workers}) as cpu:
        valid_f = pool.submit(
            run_wrk, url, "post-spread", duration=seconds, threads=1, connections=32, api_key=key
        )
        flood_f = pool.submit(
            run_wrk, url, "post-flood", duration=seconds, threads=1, connections=32, api_key=""
        )
        valid, flood = valid_f.result(), flood_f.result()
    queries = statements(dsn) - before
    return valid, flood, queries, cpu.result["workers"] * max(valid.duration_s, flood.duration_s)


def one_round(
    urls: dict[str, str],
    dsn: str,
    keys: dict[str, str],
    seconds: int,
    workers: dict[str, PidSource],
) -> dict[str, Any]:
    def wrk(workload: str, key: str, threads: int, conns: int) -> WrkResult:
        return run_wrk(
            urls["tarpit"],
            workload,
            duration=seconds,
            threads=threads,
            connections=conns,
            api_key=key,
        )

    with CpuWindow({"workers": workers["tarpit"]}) as cpu_alone:
        alone = wrk("post-spread", keys["unlimited"], 1, 32)
    valid, flood, queries, _ = flood_window(
        urls["tarpit"], dsn, keys["unlimited"], seconds, workers["tarpit"]
    )
    open_valid, open_flood, open_queries, open_cpu = flood_window(
        urls["open"], dsn, keys["unlimited"], seconds, workers["open"]
    )
    # Worker CPU per request: an increment's from the run alone, a 401's from what the
    # flood without the tarpit used beyond its increments.
    per_valid = cpu_alone.result["workers"] * alone.duration_s / max(alone.requests, 1)
    per_401 = (open_cpu - per_valid * open_valid.requests) / max(open_flood.requests, 1)
    unlimited = wrk("post-spread", keys["unlimited"], 2, 64)
    limited = wrk("post-spread", keys["limited"], 2, 64)
    return {
        "flood_over_alone": round(valid.ok_rps / max(alone.ok_rps, 1), 3),
        "open_flood_over_alone": round(open_valid.ok_rps / max(alone.ok_rps, 1), 3),
        "limited_over_unlimited": round(limited.ok_rps / max(unlimited.ok_rps, 1), 3),
        "valid_alone_rps": alone.ok_rps,
        "valid_with_flood_rps": valid.ok_rps,
        "valid_with_open_flood_rps": open_valid.ok_rps,
        "flood_rps": flood.rps,
        "open_flood_rps": open_flood.rps,
        "flood_requests": flood.requests + open_flood.requests,
        "flood_non_401": flood.requests
        - flood.errors["status"]
        + open_flood.requests
        - open_flood.errors["status"],
        "pg_statements_during_flood": queries + open_queries,
        "unlimited_rps": unlimited.ok_rps,
        "limited_rps": limited.ok_rps,
        "unlimited_p50_ms": unlimited.latency_ms["p50"],
        "limited_p50_ms": limited.latency_ms["p50"],
        "worker_cpu_us_per_increment": round(per_valid * 1e6, 1),
        "worker_cpu_us_per_401": round(per_401 * 1e6, 1),
    }


def report(rounds: list[dict[str, Any]], args: argparse.Namespace) -> str:
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    lines = [
        f"# Authentication benchmark ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})",
        "",
        f"`python -m benchmarks.auth_bench --duration {args.duration} --rounds {args.rounds}`:"
        " service under gunicorn + meinheld, 2 workers, 3-master Redis Cluster; the flood"
        " is run against the service with its default tarpit and against a second one with"
        " it off (`COUNTER_AUTH_FAILURES_PER_S=0`).",
        "",
        "| round | valid alone | valid + flood | 401/s | valid + flood, no tarpit | 401/s"
        " | PG statements in floods | flood / alone | no tarpit / alone"
        " | unlimited | limited | limited / unlimited |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rounds + [med]):
        name = "median" if i == len(rounds) else str(i + 1)
        lines.append(
            f"| {name} | {r['valid_alone_rps']:,.0f} | {r['valid_with_flood_rps']:,.0f} | "
            f"{r['flood_rps']:,.0f} | {r['valid_with_open_flood_rps']:,.0f} | "
            f"{r['open_flood_rps']:,.0f} | {r['pg_statements_during_flood']:.0f} | "
            f"{r['flood_over_alone']:.2f} | {r['open_flood_over_alone']:.2f} | "
            f"{r['unlimited_rps']:,.0f} | {r['limited_rps']:,.0f} | "
            f"{r['limited_over_unlimited']:.2f} |"
        )
    lines.append("\nEach column's median is taken on its own (ratios too).")
    lines += [
        "",
        f"- Flood: {sum(r['flood_requests'] for r in rounds):,} made-up keys, "
        f"{sum(r['pg_statements_during_flood'] for r in rounds)} PostgreSQL statements in all "
        f"flood windows, {sum(r['flood_non_401'] for r in rounds)} answers other than 401.",
        f"- Valid-key throughput with the flood / alone (median of the rounds' ratios): "
        f"{med['flood_over_alone']:.2f} with the tarpit, {med['open_flood_over_alone']:.2f} "
        "without it.",
        f"- Worker CPU per request: {med['worker_cpu_us_per_increment']:.0f} µs per increment, "
        f"{med['worker_cpu_us_per_401']:.0f} µs per 401 (the untarpitted flood window's worker "
        "CPU beyond its increments).",
        f"- Rate limiter (a limited key that is never refused) / unlimited key: "
        f"{med['limited_over_unlimited']:.2f} of the throughput (median of the rounds' "
        f"ratios); p50 "
        f"{med['limited_p50_ms']:.2f} vs {med['unlimited_p50_ms']:.2f} ms (closed loop).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk point")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auth-bench-"))
    cluster, pg = RedisCluster(work / "redis", masters=3), PostgresServer()
    try:
        nodes, dsn = cluster.start(), counted(pg)
        env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTER_")}
        env.update(COUNTER_REDIS_NODES=nodes, COUNTER_PG_DSN=dsn, COUNTER_FLUSHER_METRICS_PORT="0")
        _counterctl(["migrate"], env)
        keys = {
            name: _counterctl(["keys", "create", "--tenant", "bench", *extra], env).split()[-1]
            for name, extra in (
                ("unlimited", []),
                ("limited", ["--rate", "1000000", "--burst", "1000000000"]),
            )
        }
        env["COUNTER_KEYS_RESYNC"] = "3600"
        open_env = {**env, "COUNTER_AUTH_FAILURES_PER_S": "0"}
        for sub in ("tarpit", "open"):
            (work / sub).mkdir()
        with (
            Server(SERVICE, 2, env, work / "tarpit") as server,
            Server(SERVICE, 2, open_env, work / "open") as open_server,
        ):
            urls = {"tarpit": server.url, "open": open_server.url}
            for url in urls.values():  # warm up: every namespace hydrated, scripts loaded
                for key in keys.values():
                    run_wrk(url, "post-spread", duration=2, threads=1, connections=8, api_key=key)
            workers = {"tarpit": tree(server.pid), "open": tree(open_server.pid)}
            rounds = [
                one_round(urls, dsn, keys, args.duration, workers) for _ in range(args.rounds)
            ]
    finally:
        cluster.stop()
        pg.cleanup()
    text = report(rounds, args)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"auth-{stamp}.md").write_text(text)
    (args.out / f"auth-{stamp}.json").write_text(json.dumps(rounds, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
