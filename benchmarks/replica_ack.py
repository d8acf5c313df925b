"""What COUNTER_REPLICA_ACK=1 costs the hot path, measured in one run.

A 3-master Redis Cluster with a replica per master (``devstack.RedisCluster``). The
service (2 meinheld workers, the lean client) runs against it with replica
acknowledgement off and on in turn, interleaved and alternating which goes first,
with the same PostgreSQL and API key and no flusher, under ``wrk -t2 -c64`` POSTs
over 1,000 namespaces. With it on, each pipelined batch of writes is followed by
one ``WAIT 1`` on its connection, so a 200 also means a replica has the increment.
Reported: req/s, wrk's p50/p99, and worker and Redis CPU per request.

Usage: ``python -m benchmarks.replica_ack [--rounds 3] [--duration 8] [--out DIR]``
(~2 minutes); writes ``replica-ack-<UTC>.json`` and ``.md`` to ``DIR``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stack import _counterctl
from benchmarks.tls_cost import WORKERS, _measure
from devstack import PostgresServer, RedisCluster

CONFIGS = {"off": {}, "on": {"COUNTER_REPLICA_ACK": "1"}}


def run(rounds: int, seconds: int, out: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="replica-ack-"))
    pg, cluster = PostgresServer(), RedisCluster(work / "cluster", masters=3, replicas=1)
    points: list[dict[str, Any]] = []
    try:
        base = {"COUNTER_PG_DSN": pg.start(), "COUNTER_REDIS_NODES": cluster.start()}
        base["PYTHONUNBUFFERED"] = "1"
        _counterctl(["migrate"], base)
        key = _counterctl(["keys", "create", "--tenant", "ack-bench"], base).splitlines()[-1]
        for i in range(rounds):
            for name in ["off", "on"] if i % 2 == 0 else ["on", "off"]:
                point = _measure(name, {**base, **CONFIGS[name]}, cluster.pids, key, work, seconds)
                point["round"] = i
                points.append(point)
                print(json.dumps(point), flush=True)
    finally:
        cluster.stop()
        pg.stop()
        pg.cleanup()
    return _summary(points, rounds, seconds, out)


def _summary(points: list[dict[str, Any]], rounds: int, seconds: int, out: Path) -> dict[str, Any]:
    def median(config: str, key: str, sub: str | None = None) -> float:
        values = [p[key][sub] if sub else p[key] for p in points if p["config"] == config]
        return round(float(statistics.median(values)), 1)

    rows = {
        c: {
            "ok_rps": median(c, "ok_rps"),
            "p50_ms": median(c, "latency_ms", "p50"),
            "p99_ms": median(c, "latency_ms", "p99"),
            "worker_us": median(c, "cpu_us_per_request", "workers"),
            "redis_us": median(c, "cpu_us_per_request", "redis"),
        }
        for c in CONFIGS
    }
    per_round = [
        on["ok_rps"] / max(off["ok_rps"], 1)
        for off, on in zip(
            [p for p in points if p["config"] == "off"],
            [p for p in points if p["config"] == "on"],
            strict=True,
        )
    ]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    doc = {"rounds": rounds, "seconds": seconds, "summary": rows, "points": points}
    out.mkdir(parents=True, exist_ok=True)
    (out / f"replica-ack-{stamp}.json").write_text(json.dumps(doc, indent=1))
    lines = [
        f"# COUNTER_REPLICA_ACK: cost on the hot path ({stamp})",
        "",
        f"`python -m benchmarks.replica_ack --rounds {rounds} --duration {seconds}`: "
        f"{WORKERS} meinheld workers, a 3-master cluster with a replica each, wrk -t2 -c64 "
        "POSTs over 1,000 namespaces, medians of the interleaved rounds.",
        "",
        "| replica ack | req/s | p50 ms | p99 ms | worker CPU µs/req | Redis CPU µs/req |",
        "|---|---|---|---|---|---|",
        *(
            f"| {c} | {r['ok_rps']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['worker_us']} | {r['redis_us']} |"
            for c, r in rows.items()
        ),
        "",
        f"on / off throughput: **{statistics.median(per_round):.2f}** (per round: "
        + ", ".join(f"{r:.2f}" for r in per_round)
        + ").",
    ]
    (out / f"replica-ack-{stamp}.md").write_text("\n".join(lines) + "\n")
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
