"""Set, reset, delete (issue 15, item 4): a raised epoch keeps the flusher, hydration
and settling exact; a concurrent increment and reset never lose the reset nor bring
the old value back into PostgreSQL, with the flusher crashing too."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.api.store import CounterStore
from service.flusher.flusher import Flusher
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.flush_helpers import Crash, flush, pg_states, redis_states
from tests.helpers import forget_in_redis, write_pg_row
from tests.integration.test_api_contract import MISC, TECH, assert_error, hdr


def test_put_sets_delete_reads_zero_and_counting_goes_on(
    client: Any, settings: Settings, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    for _ in range(3):
        client.simulate_post(MISC + "s", headers=hdr(key))
    put = client.simulate_put(MISC + "s", headers=hdr(key), json={"value": 100})
    assert put.status_code == 200 and put.json["data"] == {"namespace": "s", "value": 100}
    assert client.simulate_post(TECH + "s", headers=hdr(key)).json["data"]["value"] == 101
    gone = client.simulate_delete(TECH + "s", headers=hdr(key))
    assert gone.json["data"] == {"namespace": "s", "value": 0}
    assert client.simulate_get(MISC + "s", headers=hdr(key)).json["data"]["value"] == 0
    assert client.simulate_post(MISC + "s", headers=hdr(key)).json["data"]["value"] == 1
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == {"s": (2, 1)}  # two sets, then +1


@pytest.mark.parametrize(
    "body",
    [
        None,
        b"{}",
        b'{"value": -1}',
        b'{"value": 1.0}',
        b'{"value": "3"}',
        b'{"value": 2, "x": 1}',
        b'{"value": 9007199254740992}',
        b"nope",
    ],
)
def test_a_bad_put_is_400_and_changes_nothing(
    client: Any, new_tenant: NewTenant, body: bytes | None
) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "b", headers=hdr(key))
    assert_error(client.simulate_put(MISC + "b", headers=hdr(key), body=body), 400, "bad_request")
    assert client.simulate_get(MISC + "b", headers=hdr(key)).json["data"]["value"] == 1


def test_admin_routes_need_a_key_and_a_valid_namespace(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    assert_error(client.simulate_delete(MISC + "x"), 401, "unauthorized")
    assert_error(
        client.simulate_put(MISC + "a.b", headers=hdr(key), json={"value": 1}), 400, "bad_request"
    )
    patch = client.simulate_patch(MISC + "x", headers=hdr(key))
    assert_error(patch, 405, "method_not_allowed")
    assert {"PUT", "DELETE"} <= {m.strip() for m in patch.headers["allow"].split(",")}


def test_a_set_of_a_counter_only_postgresql_holds_outranks_its_epoch(
    client: Any, settings: Settings, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    write_pg_row(settings.pg_dsn, settings.buckets, tenant, "cold", 50)
    import psycopg

    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE counters SET epoch = 3 WHERE tenant = %s", (tenant,))
    client.simulate_put(MISC + "cold", headers=hdr(key), json={"value": 7})
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == {"cold": (4, 7)}


def test_a_lost_set_in_postgresql_is_not_undone_by_an_older_redis_epoch(
    client: Any, rclient: Any, settings: Settings, new_tenant: NewTenant
) -> None:
    """Redis lost the counter (a failover): its next set reads PostgreSQL's epoch first."""
    tenant, key = new_tenant()
    client.simulate_put(MISC + "e", headers=hdr(key), json={"value": 10})
    flush(settings)
    forget_in_redis(rclient, settings.buckets, tenant, "e")
    client.simulate_put(MISC + "e", headers=hdr(key), json={"value": 5})
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == {"e": (2, 5)}


def test_an_idempotent_put_is_applied_once(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    h = {**hdr(key), "Idempotency-Key": "put-1"}
    assert client.simulate_put(MISC + "i", headers=h, json={"value": 9}).json["data"]["value"] == 9
    client.simulate_post(MISC + "i", headers=hdr(key))
    assert client.simulate_put(MISC + "i", headers=h, json={"value": 9}).json["data"]["value"] == 9
    assert client.simulate_get(MISC + "i", headers=hdr(key)).json["data"]["value"] == 10
    assert_error(
        client.simulate_put(MISC + "i", headers=h, json={"value": 8}), 422, "idempotency_conflict"
    )


def _race(store: CounterStore, tenant: str, ns: str, mark: int) -> tuple[int, int]:
    """4 threads increment while the counter is set to ``mark`` (above anything they reach
    before); returns (increments, increments acknowledged after the set)."""
    after = [0] * 4
    counts = [0] * 4
    started = threading.Barrier(5)

    def worker(i: int) -> None:
        started.wait()
        for _ in range(150):
            if store.increment(tenant, ns) > mark:
                after[i] += 1
            counts[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    started.wait()
    for _ in range(40):  # let the increments begin
        store.get(tenant, ns)
    store.set(tenant, ns, mark)
    for t in threads:
        t.join()
    return sum(counts), sum(after)


@pytest.mark.parametrize("step", [None, "snapshot", "copy", "commit", "clear"])
def test_a_reset_racing_increments_and_a_crashing_flusher_stays_exact(
    settings: Settings, rclient: Any, new_tenant: NewTenant, step: str | None
) -> None:
    tenant, _ = new_tenant()
    store = make_store(settings)
    for _ in range(500):
        store.increment(tenant, "race")
    flush(settings)  # PostgreSQL holds 500 at epoch 0: the reset must never lose to it
    mark = 1_000_000
    total, after = _race(store, tenant, "race", mark)
    assert total == 600
    expected = (1, mark + after)
    assert redis_states(rclient, settings.buckets, tenant, ["race"]) == {"race": expected}

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    if step is not None:
        crashing = Flusher(settings, fault=crash)
        with pytest.raises(Crash):
            crashing.flush_all()
        crashing.close()
        assert pg_states(settings.pg_dsn, tenant)["race"] in ((0, 500), expected)
    store.set(tenant, "race", 0)  # a reset below PostgreSQL's value
    store.increment(tenant, "race", 3)
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == {"race": (2, 3)}
    assert store.get(tenant, "race") == 3
    store.close()
