"""The flusher's Redis side: per-node pipelines over buckets, and its Lua scripts.

PERF: every step talks to Redis in pipelines per node (buckets grouped by the node
that owns their slot), never one round trip per bucket. The scan and the scripts
(EVALSHA) are packed by hiredis and their replies read raw (``_packed``,
``_scripts``); the rare plain reads go through redis-py pipelines (``_each``).
A pipeline is sent in chunks (``SCRIPT_CHUNK`` scripts, ``SCAN_CHUNK`` scan commands),
each chunk's replies read before the next is written: Redis runs what one read of a
client brought before it serves anyone else, so a whole pass's scripts in one write
held each node for milliseconds while the workers' increments waited behind them. A
NOSCRIPT (a node restarted or a replica was promoted) loads the scripts on that
node and sends that chunk again. That is safe because every command sent here
is a read, or idempotent (clear a mark only if unchanged, raise only if lower).

redis-py's cluster client does not pipeline EVALSHA per node by itself: the
flusher asks it for each node's own client (``_node_of``, ``_slot_owners``: its
reach into redis-py's internals) and writes there."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, TypeVar

import hiredis
from redis import Redis
from redis.client import Pipeline
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from service import keys
from service.flusher.plan import Window
from service.scripts import CLEAR_DIRTY, REOPEN, SETTLE, SNAPSHOT, Script

SCRIPTS = (SNAPSHOT, CLEAR_DIRTY, SETTLE, REOPEN)
# Commands per write on one node: ~0.1-0.3 ms of that node's time each, so an increment
# arriving behind a chunk waits at most that (docs/performance.md, 2026-12-04).
SCRIPT_CHUNK = 16
SCAN_CHUNK = 256
Client = Redis | RedisCluster
Settlement = tuple[str, int, int, int]  # member, epoch, new epoch, amount (settle.lua)
Reply = Any  # a decoded RESP reply: bytes, int, list, None, or an error value
T = TypeVar("T")


def pack(*parts: str | int | bytes) -> bytes:
    """RESP encoding of one command, for the pre-packed scan (hiredis, in C)."""
    packed: bytes = hiredis.pack_command(parts)  # type: ignore[arg-type]  # stub: 1-tuple
    return packed


# -- the reach into redis-py's internals, all of it ---------------------------------------


def _node_of(client: Client, slot: int) -> Redis:
    """The redis-py client of the master serving ``slot`` (``client`` itself for one node)."""
    if isinstance(client, RedisCluster):
        node = client.nodes_manager.get_node_from_slot(slot)
        conn: Redis = client.get_redis_connection(node)
        return conn
    return client


def _slot_owners(client: Client) -> Callable[[int], Redis]:
    """slot -> the redis-py client of its master, from one copy of the slot map.

    PERF: redis-py's ``get_node_from_slot`` costs ~4 µs a call (a deprecation
    wrapper inspects its arguments): 0.7 of the scan's CPU at 32,767 buckets.
    """
    if not isinstance(client, RedisCluster):
        return lambda slot: client
    slots = client.nodes_manager.slots_cache  # slot -> [primary, replicas...]
    clients: dict[str, Redis] = {}
    owners: dict[int, Redis] = {}

    def owner(slot: int) -> Redis:
        found = owners.get(slot)
        if found is None:
            nodes = slots.get(slot)
            if not nodes:  # not covered: redis-py raises its own error
                return _node_of(client, slot)
            primary = nodes[0]
            found = clients.get(primary.name)
            if found is None:
                found = clients[primary.name] = client.get_redis_connection(primary)
            owners[slot] = found
        return found

    return owner


def _raw_replies(node: Redis, payload: bytes, replies: int) -> list[Reply]:
    """Send pre-packed commands on one pooled connection of ``node``; read ``replies`` raw."""
    pool = node.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([payload])  # type: ignore[no-untyped-call]
        return _read_replies(conn, replies)
    except BaseException:
        conn.disconnect()  # type: ignore[no-untyped-call]  # unread replies would corrupt it
        raise
    finally:
        pool.release(conn)


def _read_replies(conn: Any, replies: int) -> list[Reply]:
    """``replies`` replies parsed by one hiredis reader straight off the socket.

    PERF: redis-py's ``read_response`` per reply costs ~2.5 µs of Python each: 86 ms
    of flusher CPU per pass for the scan of 32,767 buckets on an idle cluster, against
    what this loop costs (measured in docs/performance.md). An error reply is raised,
    as ``read_response`` did; the caller then drops the connection.
    """
    reader = hiredis.Reader()
    out: list[Reply] = []
    sock = conn._sock  # redis-py's connected socket, with its socket_timeout
    while len(out) < replies:
        reply = reader.gets()
        if reply is False:
            data = sock.recv(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection mid-reply")
            reader.feed(data)
            continue
        if isinstance(reply, hiredis.ReplyError):  # as read_response did: raise it
            raise ResponseError(str(reply))
        out.append(reply)
    if reader.has_data():
        raise ConnectionError("Redis sent more than was asked for")
    return out


# ------------------------------------------------------------------------------------------


class Snapshot(NamedTuple):
    """A window as read by snapshot.lua (see there); ``at_ms``: when it was read."""

    bucket: int
    rows: bytes
    read: int
    gone: int
    invalid: int
    at_ms: int
    lineage: str  # the bucket's lineage when read (see ``service.flusher.lineage``)


class RedisSide:
    """Batched reads and conditional writes over many buckets of one client."""

    def __init__(self, client: Client, n_buckets: int) -> None:
        self.client = client
        self.keys = [keys.bucket_keys(b) for b in range(n_buckets)]
        self._slots = [key_slot(k.dirty.encode()) for k in self.keys]
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="flush-redis")
        self._zcard = [pack("ZCARD", k.dirty) for k in self.keys]
        self._head = [pack("ZRANGE", k.dirty, 0, 0, "WITHSCORES") for k in self.keys]

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.client.close()

    def _node(self, bucket: int) -> Redis:
        return _node_of(self.client, self._slots[bucket])

    def _each(
        self,
        items: Sequence[T],
        bucket_of: Callable[[T], int],
        send: Callable[[Pipeline, T], object],
        per_item: int = 1,
    ) -> list[Reply]:
        """Run ``send(pipe, item)`` (``per_item`` commands) for every item in per-node
        pipelines; one result per item (a list when ``per_item`` > 1), in item order."""
        groups: dict[Redis, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(self._node(bucket_of(item)), []).append(i)
        results: list[Reply] = [None] * len(items)
        jobs = [(node, idx, [items[i] for i in idx]) for node, idx in groups.items()]
        if len(jobs) > 1:  # PERF: the nodes work in parallel, not one after the other
            outs = list(self._pool.map(lambda j: self._run(j[0], j[2], send), jobs))
        else:
            outs = [self._run(node, todo, send) for node, _, todo in jobs]
        for (_, idx, _), out in zip(jobs, outs, strict=True):
            for n, i in enumerate(idx):
                chunk = out[n * per_item : (n + 1) * per_item]
                results[i] = chunk if per_item > 1 else chunk[0]
        return results

    def _run(
        self, node: Redis, todo: list[T], send: Callable[[Pipeline, T], object]
    ) -> list[Reply]:
        pipe = node.pipeline(transaction=False)
        for item in todo:
            send(pipe, item)
        out: list[Reply] = pipe.execute(raise_on_error=False)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out

    def _scripts(
        self,
        script: Script,
        items: Sequence[T],
        bucket_of: Callable[[T], int],
        args_of: Callable[[T], Sequence[str | int | bytes]],
    ) -> list[Reply]:
        """``script`` once per item, on its bucket's keys with ``args_of(item)``; the
        replies in item order, through ``_raw``.

        PERF: through redis-py pipelines (``_each``) the snapshot and clear of a pass
        were most of the flusher's CPU (docs/performance.md).
        """
        buckets = [bucket_of(item) for item in items]
        n_keys = len(script.roles)
        return self._raw(
            buckets,
            lambda i: pack(
                "EVALSHA",
                script.sha,
                n_keys,
                *script.keys(self.keys[buckets[i]]),
                *args_of(items[i]),
            ),
            SCRIPT_CHUNK,
        )

    def _raw(
        self, buckets: Sequence[int], command: Callable[[int], bytes], chunk: int
    ) -> list[Reply]:
        """``command(i)`` (pre-packed) on the node of ``buckets[i]``, for every i: writes of
        ``chunk`` commands per node, the nodes in parallel, replies read raw
        (``_raw_replies``) before the node's next write, in order.

        A NOSCRIPT (a node restarted, a replica promoted) loads the scripts on that node
        and sends that chunk again: each is a read, or idempotent (clear a mark only
        if unchanged, settle a lineage only if still open, reopen only if none is open).
        """
        owner = _slot_owners(self.client)
        groups: dict[Redis, list[int]] = {}
        for i, b in enumerate(buckets):
            groups.setdefault(owner(self._slots[b]), []).append(i)

        def run(node: Redis, idx: list[int]) -> list[Reply]:
            got: list[Reply] = []
            for k in range(0, len(idx), chunk):
                got += run_chunk(node, idx[k : k + chunk])
            return got

        def run_chunk(node: Redis, idx: list[int]) -> list[Reply]:
            payload = b"".join(command(i) for i in idx)
            try:
                return _raw_replies(node, payload, len(idx))
            except ResponseError as exc:
                if not str(exc).startswith("NOSCRIPT"):
                    raise
            for loaded in SCRIPTS:
                node.script_load(loaded.source)
            return _raw_replies(node, payload, len(idx))

        jobs = list(groups.items())
        if len(jobs) > 1:  # the nodes work in parallel, not one after the other
            replies = list(self._pool.map(lambda g: run(*g), jobs))
        else:
            replies = [run(*g) for g in jobs]
        out: list[Reply] = [None] * len(buckets)
        for (_, idx), got in zip(jobs, replies, strict=True):
            for i, reply in zip(idx, got, strict=True):
                out[i] = reply
        return out

    def dirty_heads(self, buckets: Sequence[int]) -> tuple[dict[int, int], float | None]:
        """Dirty count per bucket, and the oldest first-dirty score (ms) among them."""
        counts = self._packed(buckets, self._zcard)
        dirty = [b for b, c in zip(buckets, counts, strict=True) if c]
        heads = self._packed(dirty, self._head)
        oldest = min((_head_score(h) for h in heads if h), default=None)
        return {b: int(c) for b, c in zip(buckets, counts, strict=True) if c}, oldest

    def _packed(self, buckets: Sequence[int], commands: list[bytes]) -> list[Reply]:
        """Run the pre-packed ``commands[bucket]`` of every bucket, pipelined per node.

        PERF: the scan runs every pass over every bucket. Sent as one pre-packed
        write per node and read back raw, the scan of 4096 buckets (1024 dirty) took
        17 ms of flusher CPU against 50 ms through redis-py pipelines, measured on a
        local 3-master cluster; the owners read from one copy of the slot map per call
        and the replies parsed by hiredis directly took an idle scan of 32,767 buckets
        from 86 ms to the figure in docs/performance.md. Read-only, so a failure just
        fails the pass (retried).
        """
        return self._raw(buckets, lambda i: commands[buckets[i]], SCAN_CHUNK)

    def snapshot(self, windows: Sequence[Window]) -> list[Snapshot]:
        at_ms = int(time.time() * 1000)
        raw = self._scripts(
            SNAPSHOT,
            windows,
            lambda w: w.bucket,
            lambda w: (w.start, w.start + w.count - 1, w.bucket),
        )
        return [
            Snapshot(w.bucket, rows, int(read), int(gone), int(invalid), at_ms, lineage.decode())
            for w, (rows, read, gone, invalid, lineage) in zip(windows, raw, strict=True)
        ]

    def clear(self, snaps: Sequence[Snapshot]) -> list[int]:
        """Marks removed per snapshot (only where the counter still has the flushed state)."""

        todo = [i for i, s in enumerate(snaps) if s.rows]
        cleared = [0] * len(snaps)
        done = self._scripts(
            CLEAR_DIRTY, [snaps[i] for i in todo], lambda s: s.bucket, lambda s: (s.rows, s.at_ms)
        )
        for i, n in zip(todo, done, strict=True):
            cleared[i] = int(n)
        return cleared

    def bases(self, buckets: Sequence[int]) -> bytes:
        """The bases of open lineages with each counter's epoch, as COPY text
        "bucket\ttenant\tnamespace\tepoch\tbase\n"."""

        def send(pipe: Pipeline, b: int) -> None:
            pipe.hgetall(self.keys[b].base)
            pipe.hgetall(self.keys[b].epochs)

        out = self._each(buckets, int, send, per_item=2)
        lines = []
        for bucket, (base, epochs) in zip(buckets, out, strict=True):
            for member, value in base.items():
                tenant, namespace = keys.split_member(member.decode())
                epoch = int(epochs.get(member, 0))
                lines.append(f"{bucket}\t{tenant}\t{namespace}\t{epoch}\t{int(value)}\n")
        return "".join(lines).encode()

    def settle(self, items: Sequence[tuple[int, str, list[Settlement]]]) -> list[int]:
        """``(bucket, lineage id, [(member, epoch, new epoch, amount)])``: apply and close
        each lineage if it is still that one, open; increments added per item, or -1."""
        now_ms = int(time.time() * 1000)
        out = self._scripts(
            SETTLE,
            items,
            lambda i: i[0],
            lambda i: (i[1], now_ms, *[x for one in i[2] for x in one]),
        )
        return [-1 if int(raised) < 0 else int(added) for raised, added in out]

    def reopen(self, behind: Mapping[int, Sequence[str]]) -> list[int]:
        """Open a new lineage on each bucket (1), unless one is open or it is empty (0),
        and mark its members found ``behind`` dirty so the flusher settles it."""
        now_ms = int(time.time() * 1000)
        items = sorted(behind.items())
        out = self._scripts(REOPEN, items, lambda i: i[0], lambda i: (now_ms, *i[1]))
        return [int(o) for o in out]

    def read_buckets(
        self, buckets: Sequence[int]
    ) -> list[tuple[dict[bytes, bytes], dict[bytes, bytes], set[bytes]]]:
        """Whole buckets, for verify: (values, epochs, dirty members) of each."""

        def send(pipe: Pipeline, b: int) -> None:
            k = self.keys[b]
            pipe.hgetall(k.values)
            pipe.hgetall(k.epochs)
            pipe.zrange(k.dirty, 0, -1)

        return [(v, e, set(d)) for v, e, d in self._each(buckets, int, send, per_item=3)]

    def mark_dirty(self, items: Sequence[tuple[int, str]], now_ms: int) -> None:
        """Add a dirty mark (kept if one exists) to ``(bucket, member)``: flush it again."""
        self._each(
            items,
            lambda i: i[0],
            lambda p, i: p.zadd(self.keys[i[0]].dirty, {i[1]: now_ms}, nx=True),
        )


def _head_score(reply: list[Any]) -> float:
    """Score of ``ZRANGE k 0 0 WITHSCORES``: [member, score] (RESP2), [[member, score]] (RESP3)."""
    return float(reply[0][1] if isinstance(reply[0], list) else reply[1])
