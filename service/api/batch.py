"""Many increments or reads in one request, one Lua call per Redis node.

Items are grouped by the node that serves their bucket and each group goes in one
``incr_many.lua`` / ``get_many.lua`` call; with the lean client under meinheld those
calls share the node's pipelined connection with every other request in flight.
Items are independent: a bad item gets its own error, a node that fails or whose
outcome is unknown fails only its own items (``unavailable``), and a group that a
node refused without running (a slot moved or migrating) is sent again item by
item through the single-counter path, which follows redirections.

PERF: one call per node instead of one per item: Redis runs one script per node
per batch; the worker packs one command and parses one reply per node.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
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
from service.keys import INVALID_NAMESPACE, NAME_RE, is_valid_namespace
from service.scripts import GET_MANY, INCR_MANY

MAX_ITEMS = 1000
TOO_MANY = f"Too many items: at most {MAX_ITEMS:,} per request"
BAD_BATCH = 'Invalid body: must be {"increments": [{"namespace": …, "by": …}, …]}'
BAD_ITEM = 'Invalid item: must be {"namespace": …, "by": …}'

APPLY, CHECK = "apply", "check"  # incr_many.lua's modes
Result = dict[str, Any]  # {"namespace": ns, "value": v} or {"namespace": ns, "error": {...}}


@dataclass(slots=True)
class Item:
    """One increment of a batch; ``result`` is filled in when it is decided."""

    index: int
    namespace: str
    by: int
    member: str = ""
    bucket: int = 0
    record: str = ""  # its idempotency record's key, "" without a key
    result: Result | None = None


def parse_increments(body: dict[str, Any]) -> tuple[list[Result | None], list[Item]]:
    """The batch's slots (an error already, or None) and its valid items; 400 if malformed."""
    raw = body.get("increments")
    if not isinstance(raw, list) or set(body) - {"increments"}:
        raise BadRequest(BAD_BATCH)
    if len(raw) > MAX_ITEMS:
        raise BadRequest(TOO_MANY)
    slots: list[Result | None] = []
    items: list[Item] = []
    for i, entry in enumerate(raw):
        # PERF: the common well-formed item takes the first branch, with no exception.
        if type(entry) is dict and len(entry) <= 2:
            ns, by = entry.get("namespace"), entry.get("by", 1)
            if (
                len(entry) == 1 + ("by" in entry)
                and type(ns) is str
                and NAME_RE.fullmatch(ns) is not None
                and type(by) is int
                and 1 <= by <= MAX_BY
            ):
                slots.append(None)
                items.append(Item(i, ns, by))
                continue
        slots.append(_bad_item(entry))
    return slots, items


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
        self._keys: list[tuple[str, ...]] | None = None

    @property
    def _bucket_keys(self) -> list[tuple[str, ...]]:
        """incr_many.lua's per-bucket keys (v, d, e, l, b), built once."""
        if self._keys is None:
            self._keys = [
                (k.values, k.dirty, k.epochs, k.lineage, k.base) for k in self.store.redis.keys
            ]
        return self._keys

    def increment(self, tenant: str, items: list[Item], idem: Idempotency | None = None) -> None:
        """Decide every item's ``result``; never raises for one item's failure.

        With ``idem``, each item is recorded in its own bucket (named by its index) and
        applied at most once; a key used for another batch is a 422 (IdempotencyConflict)
        found by a read-only pass over every node before anything is applied.
        """
        n = self.store.n_buckets
        for item in items:
            item.member = keys.member(tenant, item.namespace)
            item.bucket = keys.bucket_of_member(item.member, n)
            if idem is not None:
                item.record = keys.idempotency_record(item.bucket, tenant, idem.digest, item.index)
        now_ms = int(time.time() * 1000)
        groups = list(self._per_node(items))
        if idem is not None:
            for group in groups:
                self._check(group, idem, now_ms)
        for group in groups:
            self._increment_group(tenant, group, now_ms, idem)

    def _check(self, group: list[Item], idem: Idempotency, now_ms: int) -> None:
        """Raise IdempotencyConflict if an item's record is another request's."""
        try:
            self._run_incr_many(group, {}, now_ms, idem, CHECK)
        except Refused as exc:
            if is_conflict(str(exc)):
                raise IdempotencyConflict(CONFLICT) from None
        except RedisUnavailable:
            pass  # the apply pass meets the same failure and says so per item

    def _increment_group(
        self, tenant: str, group: list[Item], now_ms: int, idem: Idempotency | None
    ) -> None:
        seeds: dict[str, tuple[int, int]] = {}
        todo = group
        for _ in range(2):  # the second call carries seeds for what was missing
            try:
                todo, values = self._run_incr_many(todo, seeds, now_ms, idem, APPLY)
            except Refused as exc:
                if is_conflict(str(exc)):  # a concurrent batch with the key: nothing done
                    for item in todo:
                        item.result = item_error(item.namespace, 422, CONFLICT)
                    return
                self._one_by_one(tenant, todo, idem)  # nothing ran: follow redirections
                return
            except RedisUnavailable as exc:
                self.store.outage_failed(exc)
                for item in todo:
                    item.result = item_error(item.namespace, 503, MAY_NOT_HAVE_APPLIED)
                return
            self.store.outage_ok()
            missing = []
            for item, value in zip(todo, values, strict=True):
                if value == NEEDS_HYDRATION:
                    missing.append(item)
                else:
                    item.result = {"namespace": item.namespace, "value": int(value)}
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
                        item.result = item_error(item.namespace, 503, exc.message)
                        continue
                todo.append(item)
            if not todo:
                return
        for item in todo:  # seeded and still missing: cannot happen; never guess
            item.result = item_error(item.namespace, 503, MAY_NOT_HAVE_APPLIED)

    def _run_incr_many(
        self,
        items: list[Item],
        seeds: dict[str, tuple[int, int]],
        now_ms: int,
        idem: Idempotency | None,
        mode: str,
    ) -> tuple[list[Item], list[int]]:
        """One incr_many.lua call; the items in the script's (bucket) order, and their values."""
        per_bucket: dict[int, list[Item]] = {}
        for item in items:
            per_bucket.setdefault(item.bucket, []).append(item)
        fingerprint = "" if idem is None else idem.fingerprint
        args: list[Any] = [now_ms, TTL_MS, mode, fingerprint, "1" if seeds else "0"]
        order: list[Item] = []
        bucket_keys = self._bucket_keys
        for bucket, members in per_bucket.items():
            args += bucket_keys[bucket]
            args.append(len(members))
            for item in members:
                args += (item.member, item.by)
                if seeds:  # the call after hydration: every item has its seed
                    epoch, seed = seeds[item.member]
                    args += (seed, epoch)
                if idem is not None:
                    args.append(item.record)
            order += members
        args.append(REPLID)
        values: list[int] = self.store.redis.run(INCR_MANY, items[0].bucket, *args)
        return order, values

    def _one_by_one(self, tenant: str, items: list[Item], idem: Idempotency | None) -> None:
        for item in items:
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
        """Items grouped by the node serving their bucket; a node's map lookup failing
        fails nothing here: the group's call then fails or is refused on its own."""
        groups: dict[str, list[Item]] = {}
        nodes: dict[int, str] = {}
        redis = self.store.redis
        for item in items:
            node = nodes.get(item.bucket)
            if node is None:
                try:
                    node = nodes[item.bucket] = redis.node_of(item.bucket)
                except RedisUnavailable:
                    node = f"bucket {item.bucket}"
            group = groups.get(node)
            if group is None:
                groups[node] = [item]
            else:
                group.append(item)
        return groups.values()
