"""The flusher's per-pass scan of every bucket's dirty marks: its CPU by bucket count.

Every flush pass asks each bucket's dirty-mark zset for its size (``RedisSide.dirty_heads``),
dirty or not, so this is the flusher's floor cost per pass, which grows with
``COUNTER_BUCKETS``. Starts its own idle 3-master Redis Cluster (devstack).

Run: ``.venv/bin/python -m benchmarks.flush_scan [--buckets 4096,32767,65536] [--passes 11]``.
Prints the median flusher CPU and wall time per pass for each bucket count.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from redis.cluster import RedisCluster as ClusterClient

from devstack import RedisCluster
from service.flusher.redis_side import RedisSide


def scan_cost(nodes: str, buckets: int, passes: int) -> tuple[float, float]:
    """Median (CPU ms, wall ms) of one scan of ``buckets`` buckets."""
    host, port = nodes.split(",")[0].split(":")
    side = RedisSide(ClusterClient(host=host, port=int(port)), buckets)
    try:
        side.dirty_heads(range(buckets))  # warm: connections, slot map
        cpu, wall = [], []
        for _ in range(passes):
            c0, w0 = time.process_time(), time.perf_counter()
            side.dirty_heads(range(buckets))
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
        return statistics.median(cpu) * 1000, statistics.median(wall) * 1000
    finally:
        side.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buckets", default="4096,32767,65536")
    parser.add_argument("--passes", type=int, default=11)
    args = parser.parse_args()
    cluster = RedisCluster(Path(tempfile.mkdtemp(prefix="flush-scan-")) / "redis", masters=3)
    try:
        nodes = cluster.start()
        for n in (int(b) for b in args.buckets.split(",")):
            cpu, wall = scan_cost(nodes, n, args.passes)
            print(f"{n:>7,} buckets: {cpu:6.1f} ms flusher CPU, {wall:6.1f} ms wall per pass")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
