"""A worker's Python for one batch request, with Redis's replies canned.

What ``POST /v1/misc/counters`` does per request between the body and the response
bytes (``parse_body``, ``parse_increments``, ``Batches.increment`` with its grouping,
encoding and packing, the results and their JSON), without HTTP, the loop or Redis: the
part of the workers' CPU that code changes in ``service/api/batch.py`` move. 100 items
per request over ``--namespaces`` names (1,000 as in ``batch_bench``), or every name new
(``--unique``: a load of many counters). Timings on a shared machine are noisy; for an
A/B, count instructions instead, which repeat exactly:
``valgrind --tool=callgrind python -m benchmarks.worker_path --requests 500`` and again
with ``--requests 1500``: the difference / 1,000 is the instructions per request.
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from typing import Any

import orjson

from service.api.amounts import parse_body
from service.api.batch import Batches, Item, parse_increments, unknown
from service.fastpath.resp import pack_encoded
from service.keys import bucket_keys

BUCKETS, MASTERS, ITEMS = 4096, 3, 100


class _CannedRedis:
    """``CounterRedis``'s part a batch uses: three masters, every counter at 5."""

    def __init__(self) -> None:
        self.keys = [bucket_keys(b) for b in range(BUCKETS)]
        self.items: list[int] = []  # per call of the request being sent: its item count

    def nodes_of(self, buckets: list[int]) -> list[object]:
        return [b % MASTERS for b in buckets]

    def run_encoded_many(self, script: Any, calls: list[tuple[int, tuple[Any, ...]]]) -> list[Any]:
        out = []
        for (bucket, args), n in zip(calls, self.items, strict=True):
            keys = self.keys[bucket]
            pack_encoded("EVALSHA", script.sha, 1, keys.values, *args)  # as the lean client
            out.append([5] * n)
        self.items = []
        return out


class _CannedStore:
    n_buckets = BUCKETS

    def __init__(self) -> None:
        self.redis = _CannedRedis()

    def outage_ok(self) -> None:
        pass


class _Counted(Batches):
    """``Batches`` telling the canned Redis how many values each call answers."""

    def _encode(self, items: list[Item], *rest: Any) -> tuple[list[Item], tuple[Any, ...]]:
        order, args = super()._encode(items, *rest)
        self.store.redis.items.append(len(order))  # type: ignore[attr-defined]
        return order, args


def bodies(count: int, namespaces: int, unique: bool) -> list[bytes]:
    """Request bodies as ``benchmarks/lua/batch.lua`` builds them."""
    rng, fresh = random.Random(1), itertools.count()
    out = []
    for _ in range(count):
        names = (next(fresh) if unique else rng.randrange(namespaces) for _ in range(ITEMS))
        items = ",".join(f'{{"namespace":"ns-{n}","by":1}}' for n in names)
        out.append(b'{"increments":[%s]}' % items.encode())
    return out


def request(batches: Batches, raw: bytes) -> bytes:
    """``BatchResource.on_post`` from the body to the response's bytes."""
    slots, items = parse_increments(parse_body(raw))
    batches.increment("0123456789abcdef", items)
    results: list[Any] = slots
    for item in items:
        results[item.index] = item.result or unknown(item.namespace)
    return orjson.dumps({"data": {"results": results}, "metadata": {"timestamp": "t"}})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000, help="per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--unique", action="store_true", help="every name new")
    args = ap.parse_args()
    batches = _Counted(_CannedStore())  # type: ignore[arg-type]
    raw = bodies(args.requests * args.rounds if args.unique else 256, args.namespaces, args.unique)
    for body in raw[:256]:  # warm up
        request(batches, body)
    best, sent = float("inf"), 0
    for _ in range(args.rounds):
        start = time.perf_counter()
        for _ in range(args.requests):
            request(batches, raw[sent % len(raw)])
            sent += 1
        best = min(best, (time.perf_counter() - start) / args.requests)
    print(f"{best * 1e6:.1f} µs per {ITEMS}-item request (best of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
