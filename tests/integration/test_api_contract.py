"""The HTTP contract of DESIGN §2, against real Redis (cluster and single) and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from typing import Any

import falcon.testing
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.api.app import create_app
from service.api.keyset import KeySet
from service.api.pg import Database
from service.api.store import CounterStore
from service.apikeys import list_keys, new_key, revoke_key
from service.keys import INVALID_NAMESPACE
from service.logs import JsonFormatter
from tests.builders import NewTenant
from tests.helpers import redis_fields_of_tenant, wait_for_key

MISC = "/v1/misc/counter/"
TECH = "/v1/technology/counter/"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def hdr(key: str) -> dict[str, str]:
    return {"requiems-api-key": key}


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json
    assert body["error"] == code and body["message"]
    assert TS.fullmatch(body["metadata"]["timestamp"])
    return body


def test_post_increments_and_returns_the_envelope(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    first = client.simulate_post(MISC + "page-views", headers=hdr(key))
    second = client.simulate_post(MISC + "page-views", headers=hdr(key))
    assert first.status_code == 200 and first.headers["content-type"].startswith("application/json")
    assert first.json["data"] == {"namespace": "page-views", "value": 1}
    assert second.json["data"] == {"namespace": "page-views", "value": 2}
    assert TS.fullmatch(second.json["metadata"]["timestamp"])


def test_get_is_zero_for_a_missing_counter_and_does_not_create_it(
    client: Any, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    for _ in range(2):
        resp = client.simulate_get(MISC + "never-touched", headers=hdr(key))
        assert resp.status_code == 200
        assert resp.json["data"] == {"namespace": "never-touched", "value": 0}
    assert redis_fields_of_tenant(rclient, tenant) == []


def test_get_returns_the_current_value_without_changing_it(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    for _ in range(3):
        client.simulate_post(MISC + "downloads", headers=hdr(key))
    assert client.simulate_get(MISC + "downloads", headers=hdr(key)).json["data"]["value"] == 3
    assert client.simulate_get(MISC + "downloads", headers=hdr(key)).json["data"]["value"] == 3


def test_misc_and_technology_paths_are_the_same_counter(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "shared", headers=hdr(key))
    resp = client.simulate_post(TECH + "shared", headers=hdr(key))
    assert resp.json["data"]["value"] == 2
    assert client.simulate_get(MISC + "shared", headers=hdr(key)).json["data"]["value"] == 2


def test_a_64_char_namespace_is_valid(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    ns = "n" * 64
    assert client.simulate_post(MISC + ns, headers=hdr(key)).json["data"] == {
        "namespace": ns,
        "value": 1,
    }


@pytest.mark.parametrize(
    "namespace",
    ["n" * 65, "a.b", "..", "a b", "a%20b", "a%2Fb", "a/b", "café", "a%00b", "a%2E", "a:b", ""],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_invalid_namespaces_are_400_and_touch_nothing(
    client: Any, rclient: Any, new_tenant: NewTenant, namespace: str, method: str
) -> None:
    tenant, key = new_tenant()
    for prefix in (MISC, TECH):
        resp = client.simulate_request(method, prefix + namespace, headers=hdr(key))
        assert assert_error(resp, 400, "bad_request")["message"] == INVALID_NAMESPACE
    assert redis_fields_of_tenant(rclient, tenant) == []


def test_missing_malformed_unknown_and_revoked_keys_are_401(
    client: Any, pg_dsn: str, new_tenant: NewTenant, key_set: KeySet
) -> None:
    tenant, key = new_tenant()
    assert_error(client.simulate_post(MISC + "x"), 401, "unauthorized")
    for bad in ("ck_not-a-key", key + "x", key[:-1], "x" * 4000, new_key()):
        assert_error(client.simulate_post(MISC + "x", headers=hdr(bad)), 401, "unauthorized")
    assert client.simulate_post(MISC + "x", headers=hdr(key)).status_code == 200
    assert revoke_key(pg_dsn, list_keys(pg_dsn, tenant)[0].id)
    wait_for_key(key_set, key, present=False)  # NOTIFY: within about a second
    assert_error(client.simulate_post(MISC + "x", headers=hdr(key)), 401, "unauthorized")
    assert_error(client.simulate_get(MISC + "x", headers=hdr(key)), 401, "unauthorized")


def test_unauthorized_requests_touch_nothing(
    client: Any, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, _ = new_tenant()
    client.simulate_post(MISC + "x", headers=hdr("wrong"))
    assert redis_fields_of_tenant(rclient, tenant) == []


def test_unknown_routes_are_404(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    for path in ("/", "/v1/misc/counters/x", "/v2/misc/counter/x", "/v1/misc/counter"):
        assert_error(client.simulate_get(path, headers=hdr(key)), 404, "not_found")


@pytest.mark.parametrize("method", ["PATCH"])  # PUT and DELETE: test_set_reset_delete
def test_other_methods_are_405_with_allow(client: Any, new_tenant: NewTenant, method: str) -> None:
    _, key = new_tenant()
    resp = client.simulate_request(method, MISC + "x", headers=hdr(key))
    assert_error(resp, 405, "method_not_allowed")
    allowed = {m.strip() for m in resp.headers["allow"].split(",")}
    assert {"GET", "POST", "PUT", "DELETE"} <= allowed


def test_a_body_over_the_limit_is_413_and_counts_nothing(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    resp = client.simulate_post(MISC + "big", headers=hdr(key), body=b"x" * (128 * 1024 + 1))
    assert_error(resp, 413, "payload_too_large")
    assert client.simulate_get(MISC + "big", headers=hdr(key)).json["data"]["value"] == 0
    small = client.simulate_post(MISC + "big", headers=hdr(key), body=b"{}")
    assert small.json["data"]["value"] == 1


def test_redis_down_is_503(
    settings: Any, pg_dsn: str, new_tenant: NewTenant, key_set: KeySet
) -> None:
    from dataclasses import replace as r

    from service.api.redis_access import open_access

    dead = r(settings, redis_nodes=(), redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5)
    store = CounterStore(lambda: open_access(dead), Database(pg_dsn, max_size=2), dead.buckets)
    client = falcon.testing.TestClient(create_app(dead, store=store, keys=key_set))
    _, key = new_tenant()
    assert_error(client.simulate_post(MISC + "x", headers=hdr(key)), 503, "unavailable")
    assert_error(client.simulate_get(MISC + "x", headers=hdr(key)), 503, "unavailable")
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503
    assert ready.json == {
        "status": "unavailable",
        "checks": {"redis": False, "postgres": True, "keys": True},
    }
    assert client.simulate_get("/healthz").status_code == 200
    store.db.close()


def test_postgres_down_is_503(settings: Any, new_tenant: NewTenant, key_set: KeySet) -> None:
    from service.api.redis_access import open_access

    dead = replace(settings, pg_dsn="postgresql://postgres@127.0.0.1:1/counter")
    store = CounterStore(
        lambda: open_access(dead), Database(dead.pg_dsn, max_size=2, timeout=1), dead.buckets
    )
    client = falcon.testing.TestClient(create_app(dead, store=store, keys=key_set))
    _, key = new_tenant()  # held in memory: a new counter still needs PostgreSQL
    assert_error(client.simulate_post(MISC + "x", headers=hdr(key)), 503, "unavailable")
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503
    assert ready.json["status"] == "unavailable"
    assert ready.json["checks"]["redis"] is True and ready.json["checks"]["postgres"] is False
    store.db.close()


class Exploding(CounterStore):
    """A store with a bug: every increment raises."""

    def increment(self, *args: Any, **kwargs: Any) -> int:
        raise RuntimeError("secret-internal-detail")


def test_unexpected_errors_are_500_without_details_and_logged_once_with_the_trace(
    settings: Any,
    store: CounterStore,
    new_tenant: NewTenant,
    caplog: pytest.LogCaptureFixture,
    key_set: KeySet,
) -> None:
    broken = Exploding(lambda: store.redis, store.db, store.n_buckets)
    client = falcon.testing.TestClient(create_app(settings, store=broken, keys=key_set))
    _, key = new_tenant()
    with caplog.at_level(logging.INFO):
        resp = client.simulate_post(MISC + "x", headers=hdr(key))
    assert_error(resp, 500, "internal_error")
    assert "secret" not in resp.text and "Traceback" not in resp.text
    logged = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    assert len(logged) == 1  # once, by the error handler
    assert logged[0]["level"] == "error" and logged[0]["event"] == "unhandled error"
    assert logged[0]["exc"].startswith("Traceback")
    assert "RuntimeError: secret-internal-detail" in logged[0]["exc"]


def test_api_keys_never_reach_the_logs(
    settings: Any,
    store: CounterStore,
    pg_dsn: str,
    new_tenant: NewTenant,
    caplog: pytest.LogCaptureFixture,
    key_set: KeySet,
) -> None:
    """Every path that logs (outages, a bug, 401s) with keys in play: no key in any line."""
    from service.api.redis_access import open_access

    tenant, key = new_tenant()
    unknown = "ck_" + "u" * 43
    revoked_tenant, revoked = new_tenant()
    revoke_key(pg_dsn, list_keys(pg_dsn, revoked_tenant)[0].id)
    dead_redis = replace(settings, redis_nodes=(), redis_url="redis://127.0.0.1:1/0")
    dead_pg = replace(settings, pg_dsn="postgresql://postgres@127.0.0.1:1/counter")
    stores = [
        store,
        Exploding(lambda: store.redis, store.db, store.n_buckets),
        CounterStore(lambda: open_access(dead_redis), Database(pg_dsn, max_size=2), 4096),
        CounterStore(
            lambda: open_access(settings), Database(dead_pg.pg_dsn, max_size=2, timeout=1), 4096
        ),
    ]
    with caplog.at_level(logging.DEBUG):
        for i, s in enumerate(stores):
            client = falcon.testing.TestClient(create_app(settings, store=s, keys=key_set))
            for k in (key, unknown, revoked):  # a new counter each time: hydration asks PostgreSQL
                client.simulate_post(MISC + f"x{i}", headers=hdr(k))
                client.simulate_get(MISC + f"x{i}", headers=hdr(k))
    lines = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert "redis unavailable" in lines and "postgres unavailable" in lines  # they did log
    assert "unhandled error" in lines
    for k in (key, unknown, revoked):
        assert k not in lines and k[3:20] not in lines
    for s in stores[2:]:
        s.db.close()


def sample(client: Any, name: str, **labels: str) -> float:
    """The value of one sample of ``/metrics`` (0 when it is not there yet)."""
    for family in text_string_to_metric_families(client.simulate_get("/metrics").text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


def test_ready_and_metrics(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "m", headers=hdr(key))
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {
        "status": "ok",
        "checks": {"redis": True, "postgres": True, "keys": True},
    }
    client.simulate_get(MISC + "bad.name", headers=hdr(key))
    metrics = client.simulate_get("/metrics").text
    assert "counter_increments_total" in metrics
    assert 'counter_http_errors_total{status="400"}' in metrics


def test_each_metric_counts_exactly_what_it_names(client: Any, new_tenant: NewTenant) -> None:
    """Values, not names: 3 increments (one of a new counter) and 2 errors of each kind."""
    _, key = new_tenant()
    before = {
        "increments": sample(client, "counter_increments_total"),
        "hydrations": sample(client, "counter_hydrations_total"),
        "400": sample(client, "counter_http_errors_total", status="400"),
        "401": sample(client, "counter_http_errors_total", status="401"),
    }
    for _ in range(3):
        assert client.simulate_post(MISC + "metered", headers=hdr(key)).status_code == 200
    assert client.simulate_get(MISC + "metered", headers=hdr(key)).status_code == 200  # no count
    for _ in range(2):
        client.simulate_post(MISC + "bad.name", headers=hdr(key))
        client.simulate_post(MISC + "x", headers=hdr("ck_unknown"))
    assert sample(client, "counter_increments_total") == before["increments"] + 3
    assert sample(client, "counter_hydrations_total") == before["hydrations"] + 1  # the first
    assert sample(client, "counter_http_errors_total", status="400") == before["400"] + 2
    assert sample(client, "counter_http_errors_total", status="401") == before["401"] + 2
