"""The HTTP contract of DESIGN §2, against real Redis (cluster and single) and PostgreSQL."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import falcon.testing
import pytest

from service.api.app import create_app
from service.api.pg import Database
from service.api.store import CounterStore
from service.apikeys import list_keys, revoke_key
from service.keys import INVALID_NAMESPACE
from tests.builders import NewTenant
from tests.helpers import redis_fields_of_tenant

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


def test_missing_unknown_and_revoked_keys_are_401(
    settings: Any, store: CounterStore, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    client = falcon.testing.TestClient(create_app(replace(settings, auth_cache_ttl=0), store=store))
    assert_error(client.simulate_post(MISC + "x"), 401, "unauthorized")
    assert_error(client.simulate_post(MISC + "x", headers=hdr("ck_not-a-key")), 401, "unauthorized")
    assert client.simulate_post(MISC + "x", headers=hdr(key)).status_code == 200
    assert revoke_key(pg_dsn, list_keys(pg_dsn, tenant)[0].id)
    assert_error(client.simulate_post(MISC + "x", headers=hdr(key)), 401, "unauthorized")
    assert_error(client.simulate_get(MISC + "x", headers=hdr(key)), 401, "unauthorized")


def test_revocation_takes_effect_after_the_cache_ttl(
    settings: Any, store: CounterStore, pg_dsn: str, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    client = falcon.testing.TestClient(
        create_app(replace(settings, auth_cache_ttl=60), store=store)
    )
    assert client.simulate_post(MISC + "x", headers=hdr(key)).status_code == 200
    revoke_key(pg_dsn, list_keys(pg_dsn, tenant)[0].id)
    # Still cached: documented delay of up to COUNTER_AUTH_CACHE_TTL seconds.
    assert client.simulate_post(MISC + "x", headers=hdr(key)).status_code == 200


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
    resp = client.simulate_post(MISC + "big", headers=hdr(key), body=b"x" * 5000)
    assert_error(resp, 413, "payload_too_large")
    assert client.simulate_get(MISC + "big", headers=hdr(key)).json["data"]["value"] == 0
    small = client.simulate_post(MISC + "big", headers=hdr(key), body=b"{}")
    assert small.json["data"]["value"] == 1


def test_redis_down_is_503(settings: Any, pg_dsn: str, new_tenant: NewTenant) -> None:
    from dataclasses import replace as r

    from service.api.redis_access import open_access

    dead = r(settings, redis_nodes=(), redis_url="redis://127.0.0.1:1/0", redis_timeout=0.5)
    store = CounterStore(lambda: open_access(dead), Database(pg_dsn, max_size=2), dead.buckets)
    client = falcon.testing.TestClient(create_app(dead, store=store))
    _, key = new_tenant()
    assert_error(client.simulate_post(MISC + "x", headers=hdr(key)), 503, "unavailable")
    assert_error(client.simulate_get(MISC + "x", headers=hdr(key)), 503, "unavailable")
    assert client.simulate_get("/readyz").status_code == 503
    assert client.simulate_get("/healthz").status_code == 200
    store.db.close()


def test_postgres_down_is_503(settings: Any) -> None:
    from service.api.redis_access import open_access

    dead = replace(settings, pg_dsn="postgresql://postgres@127.0.0.1:1/counter")
    store = CounterStore(
        lambda: open_access(dead), Database(dead.pg_dsn, max_size=2, timeout=1), dead.buckets
    )
    client = falcon.testing.TestClient(create_app(dead, store=store))
    assert_error(client.simulate_post(MISC + "x", headers=hdr("ck_any")), 503, "unavailable")
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 503 and ready.json["checks"]["postgres"] is False
    store.db.close()


def test_unexpected_errors_are_500_without_details(
    settings: Any, store: CounterStore, new_tenant: NewTenant
) -> None:
    class Exploding(CounterStore):
        def increment(self, *args: Any, **kwargs: Any) -> int:
            raise RuntimeError("secret-internal-detail")

    broken = Exploding(lambda: store.redis, store.db, store.n_buckets)
    client = falcon.testing.TestClient(create_app(settings, store=broken))
    _, key = new_tenant()
    resp = client.simulate_post(MISC + "x", headers=hdr(key))
    assert_error(resp, 500, "internal_error")
    assert "secret" not in resp.text and "Traceback" not in resp.text


def test_ready_and_metrics(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "m", headers=hdr(key))
    ready = client.simulate_get("/readyz")
    assert ready.status_code == 200 and ready.json["checks"] == {"redis": True, "postgres": True}
    client.simulate_get(MISC + "bad.name", headers=hdr(key))
    metrics = client.simulate_get("/metrics").text
    assert "counter_increments_total" in metrics
    assert 'counter_http_errors_total{status="400"}' in metrics
