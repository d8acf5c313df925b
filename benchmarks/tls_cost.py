"""What TLS and AUTH to Redis cost the hot path, measured in one run.

Two 3-master Redis Clusters on this machine: one plain (``devstack.RedisCluster``),
one that demands TLS with client certificates, an ACL user and a TLS cluster bus
(``devstack.secure_redis``). The service (2 meinheld workers, the lean client:
one pipelined connection per node per worker) runs against each in turn,
interleaved and alternating which goes first, with the same PostgreSQL and API
key and no flusher for either, under ``wrk -t2 -c64`` POSTs over 1,000
namespaces. Reported: req/s, wrk's closed-loop p50/p99, and worker and Redis CPU
per request (``benchmarks.cpu``). Then the client alone, without HTTP: one
connection sending batches of pipelined INCRs to a plain and to a TLS + ACL node,
with this process's CPU time and Redis's ``used_cpu_*`` per command, which other
load on a shared machine moves much less than throughput. AUTH is paid once per
connection; what is left is TLS record encryption on both sides of every batch.

Usage: ``python -m benchmarks.tls_cost [--rounds 3] [--duration 8] [--out DIR]``
(~2 minutes); writes ``tls-<UTC>.json`` and ``.md`` to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.cpu import CpuWindow, pids, tree
from benchmarks.servers import APPS, Server
from benchmarks.stack import _counterctl
from benchmarks.wrk import run_wrk
from devstack import PostgresServer, RedisCluster, RedisSingle
from devstack.secure_redis import PASSWORD, USER, SecureRedis, make_certs
from service.fastpath.handshake import handshake_for
from service.fastpath.resp import NodeConnection, pack
from service.settings import Settings

SERVICE = next(spec for spec in APPS if spec.name == "service")
WORKERS = 2
BATCHES = (4, 64)  # client-side measurement: INCRs per pipelined batch (wrk -c64: ~4)
COMMANDS = 96_000  # per batch size and configuration


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _client_cost(
    name: str, settings: Settings, port: int, admin: redis.Redis, size: int
) -> dict[str, Any]:
    """CPU of this process and of the Redis node per command, batches of ``size`` INCRs.

    The client side of the hot path (one connection, commands sent in batches as the
    pipelined connection does) without HTTP, so other load on the machine moves it
    less than it moves throughput.
    """
    conn = NodeConnection(("127.0.0.1", port), 5.0, handshake=handshake_for(settings))
    batch = pack("INCR", "tls-cost") * size
    conn.call(batch, size)  # connect, handshake
    redis_before, before = _redis_cpu(admin), time.process_time()
    for _ in range(COMMANDS // size):
        conn.call(batch, size)
    client_s, redis_s = time.process_time() - before, _redis_cpu(admin) - redis_before
    conn.close()
    n = COMMANDS // size * size
    return {
        "config": name,
        "batch": size,
        "client_us_per_command": round(client_s / n * 1e6, 2),
        "redis_us_per_command": round(redis_s / n * 1e6, 2),
    }


def _measure(
    name: str, env: dict[str, str], redis_pids: list[int], key: str, work: Path, seconds: int
) -> dict[str, Any]:
    with Server(SERVICE, WORKERS, env, work) as server:
        run_wrk(server.url, "post-spread", duration=2, threads=2, connections=64, api_key=key)
        groups = {"workers": tree(server.pid), "redis": pids(redis_pids)}
        with CpuWindow(groups) as cpu:
            result = run_wrk(
                server.url,
                "post-spread",
                duration=seconds,
                threads=2,
                connections=64,
                api_key=key,
            )
    per_request_us = {
        g: round(cpu.result[g] / max(result.ok_rps, 1) * 1e6, 1) for g in ("workers", "redis")
    }
    return {
        "config": name,
        "rps": result.rps,
        "ok_rps": result.ok_rps,
        "errors": result.errors,
        "latency_ms": result.latency_ms,
        "cpu_cores": cpu.result,
        "cpu_us_per_request": per_request_us,
    }


def run(rounds: int, seconds: int, out: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="tls-cost-"))
    pg, plain = PostgresServer(), RedisCluster(work / "plain", masters=3)
    secure = SecureRedis(work / "tls", make_certs(work / "certs"))
    plain_single = RedisSingle(work / "plain-single")
    points: list[dict[str, Any]] = []
    client_points: list[dict[str, Any]] = []
    try:
        dsn = pg.start()
        plain_nodes = plain.start()
        tls_ports = secure.start_cluster_tls_acl()
        tls_single = secure.start_single_tls_acl()
        plain_single.start()
        base = {"COUNTER_PG_DSN": dsn, "COUNTER_REDIS_NODES": plain_nodes, "PYTHONUNBUFFERED": "1"}
        _counterctl(["migrate"], base)
        key = _counterctl(["keys", "create", "--tenant", "tls-bench"], base).splitlines()[-1]
        certs = secure.certs
        configs = {
            "plain": (base, plain.pids),
            "tls": (
                {
                    **base,
                    "COUNTER_REDIS_NODES": ",".join(f"127.0.0.1:{p}" for p in tls_ports),
                    "COUNTER_REDIS_TLS": "1",
                    "COUNTER_REDIS_TLS_CA": str(certs.ca),
                    "COUNTER_REDIS_TLS_CERT": str(certs.client_cert),
                    "COUNTER_REDIS_TLS_KEY": str(certs.client_key),
                    "COUNTER_REDIS_USERNAME": USER,
                    "COUNTER_REDIS_PASSWORD": PASSWORD,
                },
                [p.pid for p in secure.procs],
            ),
        }
        for i in range(rounds):
            order = ["plain", "tls"] if i % 2 == 0 else ["tls", "plain"]
            for name in order:
                env, redis_pids = configs[name]
                point = _measure(name, env, redis_pids, key, work, seconds)
                point["round"] = i
                points.append(point)
                print(json.dumps(point), flush=True)
        # The same client over plain TCP to one node and over TLS + AUTH to another.
        plain_port = plain_single.port
        plain_admin = redis.Redis("127.0.0.1", plain_port)
        tls_settings = Settings.from_env(
            {**configs["tls"][0], "COUNTER_REDIS_NODES": ""}
            | {"COUNTER_REDIS_URL": f"redis://127.0.0.1:{tls_single}/0"}
        )
        tls_admin = secure.client(tls_single, username=USER, password=PASSWORD)
        single = Settings(pg_dsn=dsn, redis_url=f"redis://127.0.0.1:{plain_port}/0")
        for i in range(rounds):
            for size in BATCHES:
                for name in ["plain", "tls"] if i % 2 == 0 else ["tls", "plain"]:
                    if name == "plain":
                        point = _client_cost(name, single, plain_port, plain_admin, size)
                    else:
                        point = _client_cost(name, tls_settings, tls_single, tls_admin, size)
                    point["round"] = i
                    client_points.append(point)
                    print(json.dumps(point), flush=True)
    finally:
        secure.stop()
        plain_single.stop()
        plain.stop()
        pg.stop()
        pg.cleanup()
    return _summary(points, client_points, rounds, seconds, out)


def _summary(
    points: list[dict[str, Any]],
    client_points: list[dict[str, Any]],
    rounds: int,
    seconds: int,
    out: Path,
) -> dict[str, Any]:
    def median(config: str, pick: Callable[[dict[str, Any]], float]) -> float:
        return round(float(statistics.median(pick(p) for p in points if p["config"] == config)), 1)

    rows = {
        c: {
            "ok_rps": median(c, lambda p: p["ok_rps"]),
            "p50_ms": median(c, lambda p: p["latency_ms"]["p50"]),
            "p99_ms": median(c, lambda p: p["latency_ms"]["p99"]),
            "worker_us": median(c, lambda p: p["cpu_us_per_request"]["workers"]),
            "redis_us": median(c, lambda p: p["cpu_us_per_request"]["redis"]),
        }
        for c in ("plain", "tls")
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    client = {
        f"{c}, batches of {size}": {
            k: round(
                statistics.median(
                    p[k] for p in client_points if p["config"] == c and p["batch"] == size
                ),
                2,
            )
            for k in ("client_us_per_command", "redis_us_per_command")
        }
        for size in BATCHES
        for c in ("plain", "tls")
    }
    doc = {
        "rounds": rounds,
        "seconds": seconds,
        "summary": rows,
        "client_summary": client,
        "points": points,
        "client_points": client_points,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"tls-{stamp}.json").write_text(json.dumps(doc, indent=1))
    ratio = rows["tls"]["ok_rps"] / max(rows["plain"]["ok_rps"], 1)
    lines = [
        f"# TLS to Redis: cost on the hot path ({stamp})",
        "",
        f"`python -m benchmarks.tls_cost --rounds {rounds} --duration {seconds}`: "
        f"{WORKERS} meinheld workers, wrk -t2 -c64 POSTs over 1,000 namespaces, "
        "medians of the interleaved rounds.",
        "",
        "| Redis | req/s | p50 ms | p99 ms | worker CPU µs/req | Redis CPU µs/req |",
        "|---|---|---|---|---|---|",
        *(
            f"| {c} | {r['ok_rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['worker_us']} | {r['redis_us']} |"
            for c, r in rows.items()
        ),
        "",
        f"TLS / plain throughput: **{ratio:.2f}** (per round: "
        + ", ".join(
            f"{t['ok_rps'] / max(p['ok_rps'], 1):.2f}"
            for p, t in zip(
                [p for p in points if p["config"] == "plain"],
                [p for p in points if p["config"] == "tls"],
                strict=True,
            )
        )
        + ").",
        "",
        f"The client alone (one connection, {COMMANDS:,} pipelined INCRs per point, "
        "CPU time of this process and Redis's own `used_cpu_*`, medians of the rounds):",
        "",
        "| Redis | client CPU µs/command | Redis CPU µs/command |",
        "|---|---|---|",
        *(
            f"| {c} | {r['client_us_per_command']} | {r['redis_us_per_command']} |"
            for c, r in client.items()
        ),
    ]
    (out / f"tls-{stamp}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk point")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    run(args.rounds, args.duration, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
