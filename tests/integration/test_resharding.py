"""A slot moving between masters mid-traffic: ASK, TRYAGAIN and MOVED are followed, counts exact.

Threads increment counters in the moving slot and elsewhere, on each of the service's
Redis clients, while the test migrates the slot step by step (IMPORTING/MIGRATING, the
values hash first, then the other keys, then SETSLOT NODE everywhere). Each step waits
for the redirection it should cause to show in the nodes' ``INFO errorstats``, so what
is tested never depends on a sleep.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import pytest
import redis
from redis.crc import key_slot

from service import keys
from service.api.store import CounterStore
from service.errors import BackendUnavailable, OutcomeUnknown
from service.fastpath.lean_redis import MAX_REDIRECTS, TRYAGAIN_PAUSE
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.flush_helpers import flush, pg_states

DEADLINE = 60.0  # seconds for any awaited state: generous, a loaded machine only slows it
# The lean client waits out TRYAGAIN this long at least before it gives up (503).
LEAN_TRYAGAIN_BUDGET = (MAX_REDIRECTS - 2) * TRYAGAIN_PAUSE


def _node(addr: tuple[str, int]) -> redis.Redis:
    return redis.Redis(host=addr[0], port=addr[1])


def _owner(settings: Settings, slot: int) -> tuple[str, int]:
    first = _node(settings.redis_nodes[0])
    for start, end, master, *_ in first.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            return master[0].decode(), int(master[1])
    raise AssertionError(f"slot {slot} has no owner")


def _open_migration(src: redis.Redis, dst: redis.Redis, slot: int) -> bytes:
    """IMPORTING on the target, MIGRATING on the source; returns the target's id."""
    src_id, dst_id = src.execute_command("CLUSTER MYID"), dst.execute_command("CLUSTER MYID")
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    return bytes(dst_id)


def _move_keys(
    src: redis.Redis, dst: redis.Redis, slot: int, only: Sequence[str] | None = None
) -> None:
    """MIGRATE ``only`` these keys of the slot, or all of them."""
    target = dst.connection_pool.connection_kwargs
    host, port = target["host"], target["port"]
    if only is not None:
        src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *only)
        return
    while batch := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", host, port, "", 0, 5000, "KEYS", *batch)


def _start_migration(src: redis.Redis, dst: redis.Redis, slot: int) -> bytes:
    """IMPORTING/MIGRATING, then move every key of the slot: the source now answers ASK."""
    dst_id = _open_migration(src, dst, slot)
    _move_keys(src, dst, slot)
    return dst_id


def _finish_migration(settings: Settings, slot: int, dst_id: bytes) -> None:
    """SETSLOT NODE on every master, the target first (it then serves the slot alone)."""
    ids = {addr: _node(addr).execute_command("CLUSTER MYID") for addr in settings.redis_nodes}
    for addr in sorted(settings.redis_nodes, key=lambda a: ids[a] != dst_id):
        _node(addr).execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def _errors(node: redis.Redis) -> Counter[str]:
    """The node's error replies so far by kind (``INFO errorstats``: ASK, MOVED, TRYAGAIN...)."""
    stats = node.info("errorstats")
    return Counter({k.removeprefix("errorstat_"): int(v["count"]) for k, v in stats.items()})


def _wait(done: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not seen within {timeout} s: {what}"
        time.sleep(0.002)


def _wait_for_error(node: redis.Redis, kind: str, above: int) -> int:
    """Wait until ``node`` has answered more than ``above`` errors of ``kind``; the count."""
    _wait(lambda: _errors(node)[kind] > above, f"{kind} from the node")
    return _errors(node)[kind]


def _slot_of(tenant: str, namespace: str, n_buckets: int) -> int:
    return key_slot(keys.bucket_keys(keys.bucket_of(tenant, namespace, n_buckets)).values.encode())


def _same_bucket(tenant: str, first: str, n_buckets: int, count: int) -> list[str]:
    """``first`` and other namespaces of its bucket (the same keys, the same slot)."""
    bucket = keys.bucket_of(tenant, first, n_buckets)
    found = [first]
    i = 0
    while len(found) < count:
        i += 1
        if keys.bucket_of(tenant, f"{first}-{i}", n_buckets) == bucket:
            found.append(f"{first}-{i}")
    return found


@dataclass
class Tally:
    """What one traffic thread saw; only that thread writes it."""

    acked: Counter[str] = field(default_factory=Counter)  # increments acknowledged, by ns
    unknown: Counter[str] = field(default_factory=Counter)  # 503 "may not have applied"
    values: dict[str, list[int]] = field(default_factory=dict)  # every value returned
    errors: list[str] = field(default_factory=list)  # every failed call
    wrong: list[str] = field(default_factory=list)  # a value going back: never allowed
    ops: int = 0  # calls answered


Plan = list[tuple[str, str]]  # ("increment" | "get", namespace), sent in a loop


class Traffic:
    """Threads sending increments and reads through one store until stopped."""

    def __init__(self, store: CounterStore, tenant: str, plans: list[Plan]) -> None:
        self.store, self.tenant = store, tenant
        self.tallies = [Tally() for _ in plans]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(plan, tally), daemon=True)
            for plan, tally in zip(plans, self.tallies, strict=True)
        ]

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(DEADLINE)
        assert not any(t.is_alive() for t in self._threads), "a traffic thread hangs"

    def progress(self) -> list[int]:
        return [t.ops for t in self.tallies]

    def wait_for_progress(self, calls: int) -> None:
        """Every thread answers ``calls`` more calls from now."""
        start = self.progress()
        _wait(
            lambda: all(now >= s + calls for now, s in zip(self.progress(), start, strict=True)),
            f"{calls} more calls answered on every thread",
        )

    def _run(self, plan: Plan, tally: Tally) -> None:
        last: Counter[str] = Counter()  # the highest value this thread saw, by namespace
        while not self._stop.is_set():
            for op, ns in plan:
                try:
                    if op == "increment":
                        value = self.store.increment(self.tenant, ns)
                    else:
                        value = self.store.get(self.tenant, ns)
                except BackendUnavailable as exc:
                    if isinstance(exc, OutcomeUnknown):
                        tally.unknown[ns] += 1
                    tally.errors.append(f"{op} {ns}: {exc!r} from {exc.__context__!r}")
                    continue
                if op == "increment":
                    tally.acked[ns] += 1
                    tally.values.setdefault(ns, []).append(value)
                    if value <= last[ns]:
                        tally.wrong.append(f"increment {ns} returned {value} after {last[ns]}")
                elif value < last[ns]:
                    tally.wrong.append(f"get {ns} read {value} after {last[ns]}")
                last[ns] = max(last[ns], value)
                tally.ops += 1


@pytest.mark.parametrize("client", ["lean", "redis-py"])
def test_increments_follow_a_slot_to_its_new_master_mid_traffic(
    cluster_settings: Settings, new_tenant: NewTenant, client: str
) -> None:
    settings = replace(cluster_settings, redis_client=client)
    store = make_store(settings)
    tenant, _ = new_tenant()
    moving = _same_bucket(tenant, "moving", store.n_buckets, 3)
    bucket_keys = keys.bucket_keys(keys.bucket_of(tenant, moving[0], store.n_buckets))
    slot = _slot_of(tenant, moving[0], store.n_buckets)
    others = (f"else-{i}" for i in range(100))
    elsewhere = [ns for ns in others if _slot_of(tenant, ns, store.n_buckets) != slot][:3]
    for ns in moving + elsewhere:
        assert store.increment(tenant, ns) == 1  # every key of the bucket exists on the source
    src_addr = _owner(settings, slot)
    dst_addr = next(a for a in settings.redis_nodes if a != src_addr)
    src, dst = _node(src_addr), _node(dst_addr)
    # Four threads increment a counter in the moving slot and one elsewhere each: a
    # 5-key script, refused (TRYAGAIN) while the slot's keys are split. One more reads
    # the moving counters (one key: ASK once the values hash has left the source); it
    # does not wait behind the scripts, so each step below sees its redirection at once.
    plans: list[Plan] = [
        [("increment", moving[i % 3]), ("increment", elsewhere[i % 3])] for i in range(4)
    ]
    plans.append([("get", ns) for ns in moving])

    with Traffic(store, tenant, plans) as traffic:
        traffic.wait_for_progress(20)
        before = _errors(src)
        opened = time.monotonic()
        dst_id = _open_migration(src, dst, slot)
        _move_keys(src, dst, slot, only=[bucket_keys.values])
        # Half moved: the source refuses the scripts (TRYAGAIN) and sends reads on (ASK).
        _wait_for_error(src, "TRYAGAIN", before["TRYAGAIN"])
        asks = _wait_for_error(src, "ASK", before["ASK"])
        _move_keys(src, dst, slot)
        # All moved: the source sends everything for the slot to the target (ASK).
        _wait_for_error(src, "ASK", asks)
        _finish_migration(settings, slot, dst_id)
        half_moved = time.monotonic() - opened
        # The clients' maps still name the source, which now answers MOVED.
        _wait_for_error(src, "MOVED", before["MOVED"])
        traffic.wait_for_progress(20)

    assert _owner(settings, slot) == dst_addr
    tallies = traffic.tallies
    wrong = [w for t in tallies for w in t.wrong]
    errors = [e for t in tallies for e in t.errors]
    acked = sum((t.acked for t in tallies), Counter[str]())
    unknown = sum((t.unknown for t in tallies), Counter[str]())
    assert not wrong, wrong
    # A read is one key: never refused mid-migration, only redirected (ASK, MOVED).
    assert not [e for e in errors if e.startswith("get ")], errors[:5]
    # An increment fails only when the client's redirection budget ran out (lean:
    # TRYAGAIN refused ~0.4 s on; redis-py: "TTL exhausted" after 16 redirections).
    assert all("TRYAGAIN" in e or "TTL exhausted" in e for e in errors), errors[:5]
    if client == "lean":
        # It waits out TRYAGAIN longer than the slot stayed half-moved: nothing failed.
        assert not errors or half_moved > LEAN_TRYAGAIN_BUDGET, (half_moved, errors[:5])
    member_value = dst.hget(bucket_keys.values, keys.member(tenant, moving[0]))
    assert member_value is not None  # the moving counters live on the target now
    finals = {ns: store.get(tenant, ns) for ns in moving + elsewhere}
    for ns, final in finals.items():
        returned = sorted(v for t in tallies for v in t.values.get(ns, []))
        assert len(set(returned)) == len(returned), f"{ns}: a value returned twice"
        # 1 before the traffic, then every acknowledged increment. The lean client's
        # failures can only be refusals (TRYAGAIN past its budget): never applied. A
        # redis-py failure (its own redirection budget, TTL exhausted) counts as unknown,
        # like the 503 the service answers for it: applied or not, never twice.
        if client == "lean":
            assert final == 1 + acked[ns], (ns, final, acked, unknown)
        else:
            assert 1 + acked[ns] <= final <= 1 + acked[ns] + unknown[ns], (ns, final, acked)
        if not unknown[ns]:
            assert returned == list(range(2, final + 1)), ns
    # The target holds the moved bucket under a history it did not count in (an open
    # lineage): one flush pass settles it, the next writes it. PostgreSQL then holds
    # the same values, and no later test's first flush finds the bucket still open.
    flush(settings)
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == {ns: (0, v) for ns, v in finals.items()}
    store.close()
