"""Many increments or reads in one request, one Lua call per Redis node.

Items are grouped by the node that serves their bucket and each group goes in one
``incr_many.lua`` / ``get_many.lua`` call; with the lean client under meinheld those
calls share the node's pipelined connection with every other request in flight.
Items are independent: a bad item gets its own error, a node that fails or whose
outcome is unknown fails only its own items (``unavailable``), and a group that a
node refused before counting (a slot moved or migrating) is sent again item by
item through the single-counter path, which follows redirections.

PERF: one call per node instead of one per item: Redis runs one script per node
per batch; the worker packs one command and parses one reply per node. The worker
encodes that command itself (each bucket's keys once per worker, an item as two
arguments) and sends a counter named several times once: worker CPU per increment
7.5 -> 5.8 µs at 100 items per request (docs/performance.md, the batch endpoint).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from service import keys
from service.api.amounts import MAX_BY, check_by
from service.api.errors import CODES, BadRequest, IdempotencyConflict
from service.api.idempotency import TTL_MS, Idempotency, is_conflict
from service.api.redis_access import REPLID, RedisUnavailable, Refused
from service.api.store import (
    CONFLICT,
    MAY_NOT_HAVE_APPLIED,
    NEEDS_HYDRATION,
    UNAVAILABLE,
    CounterStore,
)
from service.errors import BackendUnavailable
from service.fastpath.resp import Encoded, bulk
from service.keys import INVALID_NAMESPACE, NAME_RE, is_valid_namespace
from service.scripts import GET_MANY, INCR_MANY

MAX_ITEMS = 1000
TOO_MANY = f"Too many items: at most {MAX_ITEMS:,} per request"
BAD_BATCH = 'Invalid body: must be {"increments": [{"namespace": …, "by": …}, …]}'
BAD_ITEM = 'Invalid item: must be {"namespace": …, "by": …}'

APPLY, CHECK = "apply", "check"  # incr_many.lua's modes
Result = dict[str, Any]  # {"namespace": ns, "value": v} or {"namespace": ns, "error": {...}}


class Item:
    """One increment of a batch; ``result`` is filled in when it is decided.

    ``member`` and ``bucket`` are set when the batch is sent (``increment``, ``get``),
    ``wire`` by ``increment``. PERF: a class with ``__slots__`` and an ``__init__`` of its
    own, not a dataclass: it sets no defaults it need not, 0.31 -> 0.15 µs per item.
    """

    __slots__ = (
        "index",
        "namespace",
        "by",
        "member",
        "bucket",
        "record",
        "result",
        "total",
        "wire",
        "later",
    )

    def __init__(self, index: int, namespace: str, by: int) -> None:
        self.index = index
        self.namespace = namespace
        self.by = by
        self.total = by  # what is sent: ``by`` plus the ``by`` of the items in ``later``
        self.record = ""  # its idempotency record's key, "" without a key
        self.result: Result | None = None
        self.later: list[Item] | None = None  # items of the same counter, sent with it
        self.member: str
        self.bucket: int
        self.wire: bytes  # the member as incr_many.lua's ARGV (RESP)


# An incr_many.lua call's items in its order and their values, or what it met instead.
Outcome = tuple[list["Item"], list[int]] | RedisUnavailable


def parse_increments(body: dict[str, Any]) -> tuple[list[Result | None], list[Item]]:
    """The batch's slots (an error already, or None) and its valid items; 400 if malformed."""
    raw = body.get("increments")
    if not isinstance(raw, list) or set(body) - {"increments"}:
        raise BadRequest(BAD_BATCH)
    if len(raw) > MAX_ITEMS:
        raise BadRequest(TOO_MANY)
    slots: list[Result | None] = [None] * len(raw)
    items: list[Item] = []
    for i, entry in enumerate(raw):
        # PERF: the common well-formed item takes the first branch, with no exception.
        if type(entry) is dict:
            ns, by = entry.get("namespace"), entry.get("by", 1)
            if (
                type(ns) is str
                and type(by) is int
                and 1 <= by <= MAX_BY
                and len(entry) == 1 + ("by" in entry)
            ):
                items.append(Item(i, ns, by))
                continue
        slots[i] = _bad_item(entry)
    joined = "\n".join([item.namespace for item in items])
    if items and (joined.count("\n") >= len(items) or _NAMES_RE.fullmatch(joined) is None):
        valid = NAME_RE.fullmatch  # some namespace is invalid: find which, item by item
        for item in items:
            if valid(item.namespace) is None:
                slots[item.index] = item_error(item.namespace, 400, INVALID_NAMESPACE)
        items = [item for item in items if slots[item.index] is None]
    return slots, items


# PERF: every namespace of a batch checked by one match of the names joined by newlines,
# not one match each: 0.11 -> 0.03 µs per item. A name holding a newline (never valid)
# adds one to the count, so it cannot pass as two valid names. The quantifiers are
# possessive: with backtracking, 1,000 names of 64 characters and an invalid last one
# took 4.8 ms to refuse (0.22 ms so), a cost any client could have asked for.
_NAMES_RE = re.compile(rf"{NAME_RE.pattern}+(?:\n{NAME_RE.pattern}+)*+")


def _bad_item(entry: Any) -> Result:
    """The error of an item that is not ``{"namespace": valid, "by"?: valid}``."""
    ns = entry.get("namespace") if isinstance(entry, dict) else None
    namespace = ns if isinstance(ns, str) else None
    if not isinstance(entry, dict) or set(entry) - {"namespace", "by"}:
        return item_error(namespace, 400, BAD_ITEM)
    if not isinstance(ns, str) or not is_valid_namespace(ns):
        return item_error(namespace, 400, INVALID_NAMESPACE)
    try:
        check_by(entry.get("by", 1))
    except BadRequest as exc:
        return item_error(namespace, 400, exc.message)
    return item_error(namespace, 400, BAD_ITEM)  # not reached: every case is above


def unknown(namespace: str | None = None) -> Result:
    """An item left undecided (never expected): its outcome is unknown, never guessed."""
    return item_error(namespace, 503, MAY_NOT_HAVE_APPLIED)


def item_error(namespace: str | None, status: int, message: str) -> Result:
    code = CODES[status]
    return {"namespace": namespace, "error": {"error": code, "message": message}}


class Batches:
    """Batch increments and reads over a ``CounterStore``'s Redis and PostgreSQL."""

    def __init__(self, store: CounterStore) -> None:
        self.store = store
        self._keys: tuple[list[bytes], list[bytes]] | None = None

    @property
    def _bucket_keys(self) -> tuple[list[bytes], list[bytes]]:
        """incr_many.lua's per-bucket ARGVs, encoded once: each bucket's keys (v, d, l),
        and the same followed by the count 1 (a bucket of one item: the common case)."""
        if self._keys is None:
            names = [
                b"".join(bulk(name.encode()) for name in (k.values, k.dirty, k.lineage))
                for k in self.store.redis.keys
            ]
            self._keys = (names, [name + _INTS[1] for name in names])
        return self._keys

    def increment(self, tenant: str, items: list[Item], idem: Idempotency | None = None) -> None:
        """Decide every item's ``result``; never raises for one item's failure.

        Without ``idem``, the items of one counter are sent as one (their sum) and each
        answers the value it would have had alone: the value after the sum minus the
        ``by`` of the items after it (one script applies them together, atomically).
        With ``idem``, each item is recorded in its own bucket (named by its index) and
        applied at most once; a key used for another batch is a 422 (IdempotencyConflict)
        found by a read-only pass over every node before anything is applied.
        """
        prefix, n_buckets, digest = keys.member_prefix(tenant), self.store.n_buckets, keys.DIGEST
        sent: list[Item] = []
        first: dict[str, Item] = {}
        for item in items:
            ns = item.namespace
            item.member = member = prefix + ns
            raw = member.encode()
            item.bucket = digest(raw) % n_buckets  # PERF: keys.bucket_of_member inline
            item.wire = b"$%d\r\n%b\r\n" % (len(raw), raw)
            if idem is None:
                earlier = first.setdefault(ns, item)
                if earlier is not item:
                    earlier.total += item.by
                    if earlier.later is None:
                        earlier.later = [item]
                    else:
                        earlier.later.append(item)
                    continue
            else:
                item.record = keys.idempotency_record(item.bucket, tenant, idem.digest, item.index)
            sent.append(item)
        now_ms = int(time.time() * 1000)
        groups = list(self._per_node(sent))
        if idem is not None:
            self._check(groups, idem, now_ms)
        outcomes = self._run_incr_many([(group, {}) for group in groups], now_ms, idem, APPLY)
        for group, outcome in zip(groups, outcomes, strict=True):
            self._increment_group(tenant, group, now_ms, idem, outcome)

    def _check(self, groups: list[list[Item]], idem: Idempotency, now_ms: int) -> None:
        """Raise IdempotencyConflict if an item's record is another request's (every
        node asked at once). A node that fails here fails again in the apply pass,
        which says so per item."""
        for outcome in self._run_incr_many([(g, {}) for g in groups], now_ms, idem, CHECK):
            if isinstance(outcome, Refused) and is_conflict(str(outcome)):
                raise IdempotencyConflict(CONFLICT)

    def _increment_group(
        self,
        tenant: str,
        group: list[Item],
        now_ms: int,
        idem: Idempotency | None,
        outcome: Outcome,
    ) -> None:
        """Decide ``group``'s items from its first call's ``outcome``; what was missing
        is read from PostgreSQL and sent again with its seed (one more call)."""
        seeds: dict[str, tuple[int, int]] = {}
        todo = group
        for attempt in range(2):  # the second call carries seeds for what was missing
            if attempt:
                outcome = self._run_incr_many([(todo, seeds)], now_ms, idem, APPLY)[0]
            if isinstance(outcome, Refused):
                if is_conflict(str(outcome)):  # a concurrent batch with the key: nothing done
                    _fail(todo, 422, CONFLICT)
                    return
                self._one_by_one(tenant, todo, idem)  # nothing counted: follow redirections
                return
            if isinstance(outcome, RedisUnavailable):
                self.store.outage_failed(outcome)
                _fail(todo, 503, MAY_NOT_HAVE_APPLIED)
                return
            self.store.outage_ok()
            todo, values = outcome
            missing = []
            for item, value in zip(todo, values, strict=True):
                if value == NEEDS_HYDRATION:
                    missing.append(item)
                elif item.later is None:  # PERF: _decide's common case, inline
                    item.result = {"namespace": item.namespace, "value": value}
                else:
                    _decide(item, value)
            if not missing:
                return
            todo = []
            for item in missing:
                if item.member not in seeds:
                    try:
                        seeds[item.member] = self.store.db.read_counter(
                            item.bucket, tenant, item.namespace
                        )
                    except BackendUnavailable as exc:
                        _fail([item], 503, exc.message)
                        continue
                todo.append(item)
            if not todo:
                return
        _fail(todo, 503, MAY_NOT_HAVE_APPLIED)  # seeded and still missing: cannot happen

    def _run_incr_many(
        self,
        calls: list[tuple[list[Item], dict[str, tuple[int, int]]]],
        now_ms: int,
        idem: Idempotency | None,
        mode: str,
    ) -> list[Outcome]:
        """One incr_many.lua call per ``(items, seeds)`` (one per node), all in flight
        together; each one's items in the script's (bucket) order and their values,
        or the RedisUnavailable (Refused: it did not run) it met.

        PERF: in flight together, a request parks about once, not once per node, and
        each node gets the calls of more requests per read: 231,600 / 234,080 / 235,340
        -> 255,590 / 261,470 / 258,140 increments/s at 100 items per request; workers
        4.12-4.18 -> 3.56-3.67 µs, Redis 3.60-3.62 -> 3.23-3.34 µs of CPU per increment
        (``python -m benchmarks.batch_bench --duration 12``, three interleaved rounds).
        """
        encoded = [self._encode(items, seeds, now_ms, idem, mode) for items, seeds in calls]
        replies = self.store.redis.run_encoded_many(
            INCR_MANY, [(order[0].bucket, args) for order, args in encoded]
        )
        return [
            reply if isinstance(reply, RedisUnavailable) else (order, reply)
            for (order, _), reply in zip(encoded, replies, strict=True)
        ]

    def _encode(
        self,
        items: list[Item],
        seeds: dict[str, tuple[int, int]],
        now_ms: int,
        idem: Idempotency | None,
        mode: str,
    ) -> tuple[list[Item], tuple[Any, ...]]:
        """One incr_many.lua call's items in its (bucket) order, and its ARGV.

        PERF: the arguments are encoded here (``Encoded``), the buckets' keys once per
        worker: ``pack`` cost ~1 µs per item. A bucket is its keys v, d, l and a count.
        """
        order = sorted(items, key=_BUCKET)  # stable: a counter's items stay in order
        bucket_keys, with_one = self._bucket_keys
        ints = _INTS
        chunks: list[bytes] = []
        bucket, at, n, buckets = -1, 0, 0, 0
        for item in order:
            total = item.total
            if item.bucket != bucket:  # a bucket's keys and its count (1 until another)
                if n > 1:
                    chunks[at] = bucket_keys[bucket] + _bulk_int(n)
                bucket, n, at, buckets = item.bucket, 1, len(chunks), buckets + 1
                chunks += (
                    with_one[bucket],
                    item.wire,
                    ints[total] if total < 1024 else _bulk_int(total),
                )
            else:
                n += 1
                chunks += (item.wire, ints[total] if total < 1024 else _bulk_int(total))
            if seeds:  # the call after hydration: every item has its seed
                epoch, seed = seeds[item.member]
                chunks += (_bulk_int(seed), _bulk_int(epoch))
            if idem is not None:
                chunks.append(bulk(item.record.encode()))
        if n > 1:
            chunks[at] = bucket_keys[bucket] + _bulk_int(n)
        per_item = 2 + (2 if seeds else 0) + (idem is not None)
        count = 4 * buckets + per_item * len(order)
        fingerprint = "" if idem is None else idem.fingerprint
        seeded = "1" if seeds else "0"
        args = (now_ms, TTL_MS, mode, fingerprint, seeded, Encoded(count, b"".join(chunks)), REPLID)
        return order, args

    def _one_by_one(self, tenant: str, items: list[Item], idem: Idempotency | None) -> None:
        for item in _with_later(items):
            try:
                value = self.store.increment(tenant, item.namespace, item.by, idem, item.index)
            except IdempotencyConflict as exc:
                item.result = item_error(item.namespace, 422, exc.message)
            except BackendUnavailable as exc:
                item.result = item_error(item.namespace, 503, exc.message)
            else:
                item.result = {"namespace": item.namespace, "value": value}

    def get(self, tenant: str, namespaces: list[str]) -> list[Result]:
        """The value of each namespace (0 if none), in order; per-item errors."""
        results: list[Result | None] = [None] * len(namespaces)
        items = []
        for i, ns in enumerate(namespaces):
            if is_valid_namespace(ns):
                items.append(Item(i, ns, 1))
            else:
                results[i] = item_error(ns, 400, INVALID_NAMESPACE)
        n = self.store.n_buckets
        for item in items:
            item.member = keys.member(tenant, item.namespace)
            item.bucket = keys.bucket_of_member(item.member, n)
        redis = self.store.redis
        for group in self._per_node(items):
            args: list[Any] = []
            for item in group:
                args += [redis.keys[item.bucket].values, item.member]
            try:
                values: list[Any] = redis.run(GET_MANY, group[0].bucket, *args)
            except Refused:  # nothing ran: one by one, following redirections
                for item in group:
                    item.result = self._get_one(tenant, item)
                continue
            except RedisUnavailable as exc:
                self.store.outage_failed(exc)
                for item in group:
                    item.result = item_error(item.namespace, 503, UNAVAILABLE)
                continue
            for item, raw in zip(group, values, strict=True):
                if raw is not None:
                    item.result = {"namespace": item.namespace, "value": int(raw)}
                else:  # not in Redis: PostgreSQL's row, or 0
                    item.result = self._get_pg(tenant, item)
        for item in items:
            results[item.index] = item.result or item_error(item.namespace, 503, UNAVAILABLE)
        return [r or item_error(None, 503, UNAVAILABLE) for r in results]

    def _get_one(self, tenant: str, item: Item) -> Result:
        try:
            return {"namespace": item.namespace, "value": self.store.get(tenant, item.namespace)}
        except BackendUnavailable as exc:
            return item_error(item.namespace, 503, exc.message)

    def _get_pg(self, tenant: str, item: Item) -> Result:
        try:
            value = self.store.db.read_counter(item.bucket, tenant, item.namespace)[1]
        except BackendUnavailable as exc:
            return item_error(item.namespace, 503, exc.message)
        return {"namespace": item.namespace, "value": value}

    def _per_node(self, items: list[Item]) -> Iterable[list[Item]]:
        """Items grouped by the node serving their bucket; a bucket no node serves (or
        a map that cannot be had) fails nothing here: its group's call then fails or is
        refused on its own."""
        try:
            nodes = self.store.redis.nodes_of([item.bucket for item in items])
        except RedisUnavailable:
            nodes = [None] * len(items)
        groups: dict[object, list[Item]] = {}
        for item, node in zip(items, nodes, strict=True):
            group = groups.get(node)  # never None's: a bucket no node serves is alone
            if group is not None:
                group.append(item)
            elif node is not None:
                groups[node] = [item]
            else:
                groups.setdefault(f"bucket {item.bucket}", []).append(item)
        return groups.values()


_BUCKET = attrgetter("bucket")
_INTS = [bulk(b"%d" % i) for i in range(1024)]


def _bulk_int(value: int) -> bytes:
    """An integer as a RESP argument; the small ones (nearly every ``by``) made once."""
    return _INTS[value] if 0 <= value < 1024 else bulk(b"%d" % value)


def _decide(item: Item, value: int) -> None:
    """The values of a counter's items from the value after all of them (``Item.later``)."""
    if item.later is not None:
        for later in reversed(item.later):
            later.result = {"namespace": later.namespace, "value": value}
            value -= later.by
    item.result = {"namespace": item.namespace, "value": value}


def _fail(items: list[Item], status: int, message: str) -> None:
    for item in _with_later(items):
        item.result = item_error(item.namespace, status, message)


def _with_later(items: list[Item]) -> list[Item]:
    """``items`` and the items sent with them, each once."""
    out = []
    for item in items:
        out.append(item)
        if item.later is not None:
            out += item.later
    return out
