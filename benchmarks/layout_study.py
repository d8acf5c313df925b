"""Research, not the product: Redis bytes per counter and CPU per increment for other layouts.

``python -m benchmarks.layout_study --counters 10000000 --layouts 4096:512,65536:512``

For each ``buckets:hash-max-listpack-entries`` pair, one throwaway standalone
Redis (devstack's settings, as the cluster nodes run) gets ``--counters``
counters in the service's key layout (values hash and dirty-mark zset per
bucket, keys from ``service.keys``), then:

- **memory**: ``used_memory`` per counter with every counter dirty, and after
  deleting the dirty zsets (the state a completed flush leaves);
- **CPU per increment**: ``EVALSHA incr.lua`` on random existing counters, in
  rounds of ``--per-flush`` increments each followed by deleting the touched
  buckets' dirty zsets (what a flush does once a second), timed by Redis
  itself (``INFO commandstats`` usec_per_call); a plain ``INCR`` is timed the
  same way beside it, as a yardstick for how loaded the machine was.

``--fill hset`` (default) writes the layout with multi-field ``HSET``/``ZADD``
per bucket: the same hashes and zsets in minutes where 10 million ``incr.lua``
calls into long listpacks take far longer; ``--fill evalsha`` uses the
service's script (``fill.py``) to check that both give the same bytes.

CPU per increment depends on a bucket's size and encoding, and on a shared
machine one server measured after another sees different neighbours. So
``--cpu-matrix FIELDS:LIMIT,...`` starts one small server per pair at once
(``--matrix-buckets`` buckets of about FIELDS counters each) and measures them
in interleaved rounds, printing each pair's median (a small data set fits the
CPU caches better than 10 million counters do: read it as a comparison).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import redis

from benchmarks.fill import fill, members
from devstack import RedisSingle
from service import keys
from service.scripts import INCR, lua_source

TENANT, PREFIX, CHUNK = "bench", "big-", 500_000


def fill_hset(r: redis.Redis, n: int, n_buckets: int) -> None:
    """Values hash (member -> 1) and dirty zset (member -> now) per bucket, many fields a call."""
    now = int(time.time() * 1000)
    for start in range(0, n, CHUNK):
        by_bucket: dict[int, list[str]] = defaultdict(list)
        for m in members(TENANT, PREFIX, min(CHUNK, n - start), start):
            name = m.decode()
            by_bucket[keys.bucket_of_member(name, n_buckets)].append(name)
        pipe = r.pipeline(transaction=False)
        for b, names in by_bucket.items():
            k = keys.bucket_keys(b)
            pipe.hset(k.values, mapping=dict.fromkeys(names, 1))
            pipe.zadd(k.dirty, dict.fromkeys(names, now))
        pipe.execute()


def clear_dirty(r: redis.Redis, buckets: range | set[int]) -> None:
    pipe = r.pipeline(transaction=False)
    for b in buckets:
        pipe.delete(keys.bucket_keys(b).dirty)
    pipe.execute()


def usec_per_call(r: redis.Redis, command: str) -> float:
    stats: dict[str, Any] = r.info("commandstats")
    return float(stats.get(f"cmdstat_{command}", {}).get("usec_per_call", 0.0))


def increments(r: redis.Redis, n: int, n_buckets: int, total: int, per_flush: int) -> float:
    """usec_per_call of incr.lua on random existing counters, flushing every ``per_flush``."""
    script = r.register_script(lua_source("incr"))
    rng = random.Random(1)
    replid = str(r.info("replication")["master_replid"])  # see incr.lua
    r.config_resetstat()
    for _ in range(0, total, per_flush):
        pipe = r.pipeline(transaction=False)
        touched: set[int] = set()
        for _ in range(per_flush):
            name = f"{TENANT}/{PREFIX}{rng.randrange(n)}"
            b = keys.bucket_of_member(name, n_buckets)
            touched.add(b)
            now = int(time.time() * 1000)
            script(
                keys=list(INCR.keys(keys.bucket_keys(b))),
                args=[name, now, "", 0, 1, "", 0, replid],
                client=pipe,
            )
        if any(v < 2 for v in pipe.execute()):
            raise RuntimeError("incr.lua found no counter: the fill is not the layout it expects")
        clear_dirty(r, touched)
    return usec_per_call(r, "evalsha")


def incr_yardstick(r: redis.Redis, total: int) -> float:
    r.config_resetstat()
    pipe = r.pipeline(transaction=False)
    for i in range(total):
        pipe.incr(f"yardstick:{i % 1000}")  # sent as INCRBY key 1
    pipe.execute()
    return usec_per_call(r, "incrby")


def study(args: argparse.Namespace, n_buckets: int, limit: int, workdir: Path) -> dict[str, Any]:
    server = RedisSingle(workdir / f"{n_buckets}-{limit}")
    try:
        r = redis.Redis.from_url(server.start())
        r.config_set("hash-max-listpack-entries", limit)
        before = int(r.info("memory")["used_memory"])
        t0 = time.monotonic()
        if args.fill == "hset":
            fill_hset(r, args.counters, n_buckets)
        else:
            fill(
                [("127.0.0.1", server.port)],
                lambda b: 0,
                n_buckets,
                members(TENANT, PREFIX, args.counters),
            )
        fill_s = time.monotonic() - t0
        dirty = int(r.info("memory")["used_memory"])
        clear_dirty(r, range(n_buckets))
        flushed = int(r.info("memory")["used_memory"])
        sample = keys.bucket_keys(keys.bucket_of_member(f"{TENANT}/{PREFIX}0", n_buckets)).values
        out = {
            "buckets": n_buckets,
            "hash_max_listpack_entries": limit,
            "counters": args.counters,
            "fill": args.fill,
            "fill_s": round(fill_s, 1),
            "fields_in_sample_bucket": r.hlen(sample),
            "encoding": r.object("encoding", sample).decode(),
            "bytes_per_counter_dirty": round((dirty - before) / args.counters, 1),
            "bytes_per_counter_flushed": round((flushed - before) / args.counters, 1),
        }
        if args.increments:
            evalsha = increments(r, args.counters, n_buckets, args.increments, args.per_flush)
            out |= {"incr_lua_usec": evalsha, "plain_incr_usec": incr_yardstick(r, 100_000)}
        return out
    finally:
        server.stop()


def cpu_matrix(args: argparse.Namespace, workdir: Path) -> None:
    pairs = [tuple(int(x) for x in pair.split(":")) for pair in args.cpu_matrix.split(",")]
    n_b, servers, clients = args.matrix_buckets, [], []
    try:
        for fields, limit in pairs:
            servers.append(RedisSingle(workdir / f"cpu-{fields}-{limit}"))
            r = redis.Redis.from_url(servers[-1].start())
            r.config_set("hash-max-listpack-entries", limit)
            fill_hset(r, fields * n_b, n_b)
            clear_dirty(r, range(n_b))
            clients.append(r)
        usec: list[list[float]] = [[] for _ in pairs]
        plain: list[list[float]] = [[] for _ in pairs]
        for rnd in range(args.rounds):
            order = list(range(len(pairs)))
            for i in order[rnd % len(order) :] + order[: rnd % len(order)]:
                n = pairs[i][0] * n_b
                usec[i].append(increments(clients[i], n, n_b, args.per_flush, args.per_flush))
                plain[i].append(incr_yardstick(clients[i], 20_000))
        for (fields, limit), r, u, y in zip(pairs, clients, usec, plain, strict=True):
            sample = keys.bucket_keys(0).values
            row = {
                "fields_per_bucket": fields,
                "hash_max_listpack_entries": limit,
                "encoding": r.object("encoding", sample).decode(),
                "incr_lua_usec_median": statistics.median(u),
                "incr_lua_usec_rounds": u,
                "plain_incr_usec_median": statistics.median(y),
            }
            print(json.dumps(row), flush=True)
    finally:
        for s in servers:
            s.stop()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.layout_study", description=__doc__)
    p.add_argument("--counters", type=int, default=10_000_000)
    p.add_argument("--layouts", default="4096:512,65536:512,262144:512", help="buckets:limit,...")
    p.add_argument("--fill", choices=("hset", "evalsha"), default="hset")
    p.add_argument("--increments", type=int, default=200_000, help="0: memory only")
    p.add_argument("--per-flush", type=int, default=25_000, help="increments between flushes")
    p.add_argument("--cpu-matrix", default="", help="FIELDS:LIMIT,... (instead of --layouts)")
    p.add_argument("--matrix-buckets", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="layout-study-") as tmp:
        if args.cpu_matrix:
            cpu_matrix(args, Path(tmp))
            return
        for layout in args.layouts.split(","):
            n_buckets, limit = (int(x) for x in layout.split(":"))
            print(json.dumps(study(args, n_buckets, limit, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
