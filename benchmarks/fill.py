"""Create counters fast, exactly as the service does: ``EVALSHA incr.lua`` per counter, pipelined.

Each call is the one a first increment ends up running (seed "0", epoch 0: a
new counter), with the service's key names and bucket hash (``service.keys``),
so the data layout is the product's: values hash, dirty-mark zset, no epochs.

PERF: millions of counters must take a minute, not an hour. The commands are
encoded here as RESP bytes from a per-bucket prefix (redis-py's pipeline spends
~3x longer per command building them), sent in batches to every node, and
each batch's replies are read only after the next batch went out, so Python
encodes while the Redis nodes execute. Every reply is checked (1 = a new
counter). A fill stops at its deadline and says how many counters it made.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from service import keys
from service.scripts import INCR, lua_source

BATCH = 5000  # counters per node per round trip


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


class Encoder:
    """``EVALSHA <incr.lua> 5 <bucket keys> <member> <now> 0 0 1 "" 0 <replid>`` as RESP."""

    def __init__(self, sha: str, now_ms: int, replid: str) -> None:
        n_keys = len(INCR.roles)
        self.head = (
            b"*%d\r\n" % (3 + n_keys + 8)
            + bulk(b"EVALSHA")
            + bulk(sha.encode())
            + bulk(str(n_keys).encode())
        )
        # member, now, seed "0", epoch 0, by 1, no idempotency record, the node's replid
        self.tail = (
            bulk(str(now_ms).encode())
            + bulk(b"0")
            + bulk(b"0")
            + bulk(b"1")
            + bulk(b"")
            + bulk(b"0")
            + bulk(replid.encode())
        )
        self._keys: dict[int, bytes] = {}

    def command(self, bucket: int, member: bytes) -> bytes:
        prefix = self._keys.get(bucket)
        if prefix is None:  # KEYS in incr.lua's order, from the script registry
            names = INCR.keys(keys.bucket_keys(bucket))
            prefix = self.head + b"".join(bulk(x.encode()) for x in names)
            self._keys[bucket] = prefix
        return prefix + bulk(member) + self.tail


def members(tenant: str, prefix: str, n: int, start: int = 0) -> Iterator[bytes]:
    """``<tenant>/<prefix><i>`` for i in [start, start + n): valid, distinct counter names."""
    for i in range(start, start + n):
        yield f"{tenant}/{prefix}{i}".encode()


def _connection(host: str, port: int) -> Any:
    """A connected redis-py Connection (untyped in redis-py: Any keeps mypy --strict quiet)."""
    conn: Any = redis.Connection(host=host, port=port)  # type: ignore[no-untyped-call]
    conn.connect()
    return conn


class _Node:
    """One Redis node: a raw connection, and the replies still owed for the last batch."""

    def __init__(self, host: str, port: int) -> None:
        self.conn = _connection(host, port)
        client = redis.Redis(host=host, port=port)
        self.sha = str(client.script_load(lua_source("incr")))
        self.replid = str(client.info("replication")["master_replid"])  # see incr.lua
        self.owed = 0

    def send(self, commands: list[bytes]) -> None:
        self.conn.send_packed_command([b"".join(commands)])
        self.owed += len(commands)

    def collect(self) -> None:
        owed, self.owed = self.owed, 0
        bad = [r for r in (self.conn.read_response() for _ in range(owed)) if r != 1]
        if bad:
            raise RuntimeError(f"incr.lua did not create fresh counters: {bad[:3]!r}")

    def close(self) -> None:
        self.conn.disconnect()


@dataclass
class FillResult:
    counters: int  # counters created
    complete: bool  # False when the deadline stopped the fill
    seconds: float


def fill(
    nodes: list[tuple[str, int]],
    node_of_bucket: Callable[[int], int],
    n_buckets: int,
    names: Iterable[bytes],
    deadline_s: float = float("inf"),
) -> FillResult:
    """Create one counter per member name over ``nodes`` (index given by ``node_of_bucket``)."""
    t0 = time.monotonic()
    conns = [_Node(h, p) for h, p in nodes]
    encoders = [Encoder(c.sha, int(time.time() * 1000), c.replid) for c in conns]
    pending: list[list[bytes]] = [[] for _ in conns]
    made, complete = 0, True
    try:
        for member in names:
            b = keys.bucket_of_member(member.decode(), n_buckets)
            i = node_of_bucket(b)
            pending[i].append(encoders[i].command(b, member))
            if len(pending[i]) >= BATCH:
                made += _flush(conns, pending)
                if time.monotonic() - t0 > deadline_s:
                    complete = False
                    break
        made += _flush(conns, pending)
        for c in conns:
            c.collect()
    finally:
        for c in conns:
            c.close()
    return FillResult(made, complete, round(time.monotonic() - t0, 1))


def _flush(conns: list[_Node], pending: list[list[bytes]]) -> int:
    """Collect the previous batch's replies (computed meanwhile), then send this one."""
    sent = 0
    for c, cmds in zip(conns, pending, strict=True):
        if cmds:
            c.collect()
            c.send(cmds)
            sent += len(cmds)
            cmds.clear()
    return sent
