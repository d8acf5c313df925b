"""Batches (issue 15, item 2): many increments or reads per request, items independent,
one Lua call per Redis node."""

from __future__ import annotations

from typing import Any

import pytest

from service.api.batch import MAX_ITEMS
from service.keys import INVALID_NAMESPACE
from tests.builders import NewTenant
from tests.integration.test_api_contract import assert_error, hdr

BATCH = "/v1/misc/counters"
TECH_BATCH = "/v1/technology/counters"


def post(client: Any, key: str, items: list[Any], path: str = BATCH) -> Any:
    return client.simulate_post(path, headers=hdr(key), json={"increments": items})


def test_a_batch_counts_each_item_in_order_repeats_included(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    items: list[dict[str, Any]] = [{"namespace": f"n{i % 37}", "by": 1 + i % 3} for i in range(300)]
    resp = post(client, key, items)
    assert resp.status_code == 200, resp.text
    results = resp.json["data"]["results"]
    running: dict[str, int] = {}
    for item, result in zip(items, results, strict=True):
        running[item["namespace"]] = running.get(item["namespace"], 0) + item["by"]
        assert result == {"namespace": item["namespace"], "value": running[item["namespace"]]}
    read = client.simulate_get(
        TECH_BATCH, headers=hdr(key), params={"namespace": ["n0", "n36", "never"]}
    )
    assert read.json["data"]["results"] == [
        {"namespace": "n0", "value": running["n0"]},
        {"namespace": "n36", "value": running["n36"]},
        {"namespace": "never", "value": 0},
    ]
    for ns, total in running.items():
        single = client.simulate_get("/v1/misc/counter/" + ns, headers=hdr(key))
        assert single.json["data"]["value"] == total


def test_bad_items_get_their_own_error_and_stop_nothing(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    items: list[Any] = [
        {"namespace": "ok"},
        {"namespace": "a.b"},
        {"namespace": "ok", "by": 0},
        {"namespace": "ok", "by": "2"},
        "not an object",
        {"namespace": "ok", "extra": 1},
        {"namespace": "ok", "by": 4},
    ]
    results = post(client, key, items, TECH_BATCH).json["data"]["results"]
    assert results[0] == {"namespace": "ok", "value": 1}
    assert results[6] == {"namespace": "ok", "value": 5}
    for i in range(1, 6):
        assert results[i]["error"]["error"] == "bad_request", results[i]
        assert results[i]["error"]["message"]
    assert results[1]["namespace"] == "a.b" and results[4]["namespace"] is None
    read = client.simulate_get(BATCH, headers=hdr(key), params={"namespace": ["ok", "a.b"]})
    assert read.json["data"]["results"][0] == {"namespace": "ok", "value": 5}
    assert read.json["data"]["results"][1]["error"]["error"] == "bad_request"


@pytest.mark.parametrize("bad", ["a\nb", "\n", "a\n", "\na", "", "x" * 65, "ok\nok", "é"])
@pytest.mark.parametrize("at", [0, 1, 2])
def test_an_invalid_namespace_among_valid_ones_is_found_wherever_it_is(
    client: Any, new_tenant: NewTenant, bad: str, at: int
) -> None:
    """The namespaces of a batch are checked by one match of them joined by newlines: a
    name with a newline must not pass as two valid names, wherever it stands."""
    _, key = new_tenant()
    items: list[Any] = [{"namespace": "a"}, {"namespace": "b"}]
    items.insert(at, {"namespace": bad})
    results = post(client, key, items).json["data"]["results"]
    assert results[at] == {
        "namespace": bad,
        "error": {"error": "bad_request", "message": INVALID_NAMESPACE},
    }
    assert [r for i, r in enumerate(results) if i != at] == [
        {"namespace": "a", "value": 1},
        {"namespace": "b", "value": 1},
    ]
    read = client.simulate_get(BATCH, headers=hdr(key), params={"namespace": ["ok", "x"]})
    assert read.json["data"]["results"] == [
        {"namespace": "ok", "value": 0},
        {"namespace": "x", "value": 0},
    ]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{bad",
        b'{"increments": {}}',
        b'{"increments": [], "other": 1}',
        b'{"items": []}',
    ],
)
def test_a_malformed_batch_is_400_and_changes_nothing(
    client: Any, new_tenant: NewTenant, body: bytes
) -> None:
    _, key = new_tenant()
    assert_error(client.simulate_post(BATCH, headers=hdr(key), body=body), 400, "bad_request")


def test_a_batch_over_the_limit_is_400_and_changes_nothing(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    resp = post(client, key, [{"namespace": "x"}] * (MAX_ITEMS + 1))
    assert_error(resp, 400, "bad_request")
    assert client.simulate_get("/v1/misc/counter/x", headers=hdr(key)).json["data"]["value"] == 0
    full = post(client, key, [{"namespace": "x"}] * MAX_ITEMS)
    assert full.json["data"]["results"][-1] == {"namespace": "x", "value": MAX_ITEMS}
    many = client.simulate_get(BATCH, headers=hdr(key), params={"namespace": ["x"] * 1001})
    assert_error(many, 400, "bad_request")


def test_a_batch_needs_a_key(client: Any) -> None:
    assert_error(post(client, "ck_nope", [{"namespace": "x"}]), 401, "unauthorized")
    assert_error(client.simulate_post(BATCH, json={"increments": []}), 401, "unauthorized")


def test_counters_held_by_postgresql_only_are_hydrated_in_a_batch(
    client: Any, settings: Any, new_tenant: NewTenant
) -> None:
    from tests.helpers import write_pg_row

    tenant, key = new_tenant()
    write_pg_row(settings.pg_dsn, settings.buckets, tenant, "old", 40)
    results = post(client, key, [{"namespace": "old"}, {"namespace": "old", "by": 2}]).json
    assert results["data"]["results"] == [
        {"namespace": "old", "value": 41},
        {"namespace": "old", "value": 43},
    ]
    write_pg_row(settings.pg_dsn, settings.buckets, tenant, "cold", 9)
    read = client.simulate_get(BATCH, headers=hdr(key), params={"namespace": "cold"})
    assert read.json["data"]["results"] == [{"namespace": "cold", "value": 9}]


def _script_calls(settings: Any) -> int:
    import redis

    if settings.redis_nodes:
        clients = [redis.Redis(host=h, port=p) for h, p in settings.redis_nodes]
    else:
        clients = [redis.Redis.from_url(settings.redis_url)]
    total = 0
    for r in clients:
        stats = r.info("commandstats")
        total += sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))
    return total


def test_a_batch_is_one_script_call_per_node(
    client: Any, settings: Any, new_tenant: NewTenant
) -> None:
    """300 items over 100 buckets: at most one call per master (and a NOSCRIPT retry)."""
    _, key = new_tenant()
    post(client, key, [{"namespace": "warm"}])  # hydration and script loading done
    items = [{"namespace": f"w{i % 100}"} for i in range(300)]
    post(client, key, items)  # the new counters' hydration: two calls per node
    masters = len(settings.redis_nodes) if settings.redis_nodes else 1
    before = _script_calls(settings)
    assert post(client, key, items).json["data"]["results"][-1]["value"] == 6
    assert _script_calls(settings) - before <= masters


def test_flushed_batches_land_in_postgresql_exactly(
    client: Any, settings: Any, new_tenant: NewTenant
) -> None:
    from tests.flush_helpers import flush, pg_states

    tenant, key = new_tenant()
    items: list[dict[str, Any]] = [{"namespace": f"f{i % 50}", "by": 1 + i} for i in range(200)]
    post(client, key, items)
    flush(settings)
    expected: dict[str, tuple[int, int]] = {}
    for item in items:
        epoch, value = expected.get(item["namespace"], (0, 0))
        expected[item["namespace"]] = (epoch, value + item["by"])
    assert pg_states(settings.pg_dsn, tenant) == expected


def test_repeated_namespaces_across_buckets_and_nodes_keep_exact_values(
    client: Any, settings: Any, new_tenant: NewTenant
) -> None:
    """Counters held by Redis, by PostgreSQL only (one with an epoch) and new ones, each
    repeated many times and interleaved in one batch, without and with an
    Idempotency-Key: every item answers its own running value, and the flush is exact."""
    import psycopg

    from service import keys
    from tests.flush_helpers import flush, pg_states

    tenant, key = new_tenant()
    names = [f"r{i}" for i in range(24)]
    post(client, key, [{"namespace": ns, "by": 5} for ns in names[:8]])
    state: dict[str, tuple[int, int]] = {ns: (0, 5) for ns in names[:8]}
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        for i, ns in enumerate(names[8:16]):
            epoch = 2 if i == 0 else 0  # a counter set or reset before: its epoch is kept
            conn.execute(
                "INSERT INTO counters (bucket, tenant, namespace, epoch, value)"
                " VALUES (%s, %s, %s, %s, 100)",
                (keys.bucket_of(tenant, ns, settings.buckets), tenant, ns, epoch),
            )
            state[ns] = (epoch, 100)
    state.update({ns: (0, 0) for ns in names[16:]})
    items: list[dict[str, Any]] = [
        {"namespace": names[(i * 7) % 24], "by": 1 + i % 4} for i in range(240)
    ]
    for headers in (hdr(key), {**hdr(key), "Idempotency-Key": "repeats"}):
        results = client.simulate_post(BATCH, headers=headers, json={"increments": items})
        for item, result in zip(items, results.json["data"]["results"], strict=True):
            epoch, before = state[item["namespace"]]
            state[item["namespace"]] = (epoch, before + item["by"])
            assert result == {"namespace": item["namespace"], "value": before + item["by"]}
    flush(settings)
    assert pg_states(settings.pg_dsn, tenant) == state


def test_each_applied_item_counts_once_in_the_increments_metric(
    client: Any, new_tenant: NewTenant
) -> None:
    from tests.integration.test_api_contract import sample

    _, key = new_tenant()
    before = sample(client, "counter_increments_total")
    items = [{"namespace": "m"}, {"namespace": "a.b"}, {"namespace": "m", "by": 2}, {"by": 0}]
    results = post(client, key, items + [{"namespace": "n"}]).json["data"]["results"]
    assert [r.get("value") for r in results] == [1, None, 3, None, 1]
    assert sample(client, "counter_increments_total") == before + 3
