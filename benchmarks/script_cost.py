"""Redis CPU per item of ``incr_many.lua``, the batch endpoint's script, alone.

One master of a throwaway 3-master cluster; 1,000 of its counters over the buckets it
serves of 4,096, each existing and its bucket's lineage current (the common case);
calls of 33 items, one bucket each (what a node gets of a 100-item batch over 3
masters), pipelined 50 at a time.
Reports the script's own time (``INFO commandstats``) and the node's CPU, per item.
Scripts given together are measured in turn, ``--rounds`` times, so an A/B of two
versions shares the machine's state:
``python -m benchmarks.script_cost service/lua/incr_many.lua /tmp/old/incr_many.lua``.
"""

from __future__ import annotations

import argparse
import random
import tempfile
from pathlib import Path

import redis
from redis.crc import key_slot

from devstack import RedisCluster
from service.keys import bucket_of_member

BUCKETS, COUNTERS, PER_CALL, CALLS = 4096, 1000, 33, 3000


def _node_cpu(r: redis.Redis) -> float:
    cpu = r.info("cpu")
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


def _calls(replid: str, members: list[str]) -> list[list[str]]:
    """200 argument lists as ``service/api/batch.py`` builds them (no key, no seeds)."""
    out = []
    for _ in range(200):
        chosen = sorted(random.sample(members, PER_CALL), key=lambda m: _bucket(m))
        args: list[str] = []
        for m in chosen:
            b = _bucket(m)
            args += [f"c:{{{b}}}:v", f"c:{{{b}}}:d", f"c:{{{b}}}:l", "1", m, "1"]
        out.append(["1700000000000", "86400000", "apply", "", "0", *args, replid])
    return out


def _bucket(member: str) -> int:
    return bucket_of_member(member, BUCKETS)


def measure(r: redis.Redis, path: Path, calls: list[list[str]]) -> tuple[float, float]:
    """(script µs, node CPU µs) per item of ``CALLS`` calls of the script at ``path``."""
    sha = r.script_load(path.read_text())
    r.config_resetstat()
    cpu = _node_cpu(r)
    pipe = r.pipeline(transaction=False)
    for i in range(CALLS):
        call = calls[i % len(calls)]
        pipe.evalsha(sha, 1, call[5], *call)  # KEYS[1]: the first bucket's v
        if i % 50 == 49:
            pipe.execute()
    pipe.execute()
    cpu = _node_cpu(r) - cpu
    items = CALLS * PER_CALL
    script = r.info("commandstats")["cmdstat_evalsha"]["usec"]
    return script / items, cpu * 1e6 / items


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scripts", nargs="*", type=Path, default=[Path("service/lua/incr_many.lua")])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = RedisCluster(Path(tmp), masters=3)
        try:
            cluster.start()
            node = cluster.topology()[0]
            r = redis.Redis(host="127.0.0.1", port=node.port)
            replid = r.info("replication")["master_replid"]
            mine = (f"bench/ns-{i}" for i in range(10 * COUNTERS))
            members = [m for m in mine if node.serves(key_slot(f"c:{{{_bucket(m)}}}:v".encode()))]
            members = members[:COUNTERS]
            for m in members:
                r.hset(f"c:{{{_bucket(m)}}}:v", m, 1)
                r.set(f"c:{{{_bucket(m)}}}:l", f"{replid}:1700000000000000:s")
            calls = _calls(replid, members)
            for _ in range(args.rounds):
                for path in args.scripts:
                    script, cpu = measure(r, path, calls)
                    print(f"{path}: script {script:.2f} µs, node CPU {cpu:.2f} µs per item")
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
