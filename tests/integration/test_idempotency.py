"""Idempotency keys (issue 15, item 3): a retried request is applied once and answers
the first response; the same key with another request is a 422."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import falcon.testing

from service import keys
from service.api.app import create_app
from service.settings import Settings
from tests.builders import NewTenant, make_store
from tests.helpers import keep_busy, node_of
from tests.integration.test_api_contract import MISC, TECH, assert_error

BATCH = "/v1/misc/counters"


def hdr(key: str, idem: str | None = None) -> dict[str, str]:
    h = {"requiems-api-key": key}
    if idem is not None:
        h["Idempotency-Key"] = idem
    return h


def value(client: Any, key: str, ns: str) -> int:
    return int(client.simulate_get(MISC + ns, headers=hdr(key)).json["data"]["value"])


def test_a_repeated_increment_is_applied_once_and_answers_the_first_value(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "p", headers=hdr(key), params={"by": "4"})
    first = client.simulate_post(MISC + "p", headers=hdr(key, "k-1"), json={"by": 3})
    assert first.json["data"] == {"namespace": "p", "value": 7}
    client.simulate_post(MISC + "p", headers=hdr(key))  # 8: a different request, no key
    again = client.simulate_post(TECH + "p", headers=hdr(key, "k-1"), params={"by": "3"})
    assert again.status_code == 200 and again.json["data"] == {"namespace": "p", "value": 7}
    assert value(client, key, "p") == 8
    other = client.simulate_post(MISC + "p", headers=hdr(key, "k-2"), json={"by": 3})
    assert other.json["data"]["value"] == 11


def test_the_same_key_with_another_request_is_422_and_changes_nothing(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    client.simulate_post(MISC + "q", headers=hdr(key, "same"))
    resp = client.simulate_post(MISC + "q", headers=hdr(key, "same"), params={"by": "2"})
    assert_error(resp, 422, "idempotency_conflict")
    assert value(client, key, "q") == 1


def test_keys_are_per_tenant(client: Any, new_tenant: NewTenant) -> None:
    _, key_a = new_tenant()
    _, key_b = new_tenant()
    assert client.simulate_post(MISC + "t", headers=hdr(key_a, "shared")).json["data"]["value"] == 1
    assert client.simulate_post(MISC + "t", headers=hdr(key_b, "shared")).json["data"]["value"] == 1
    resp = client.simulate_post(MISC + "t", headers=hdr(key_b, "shared"), params={"by": "9"})
    assert_error(resp, 422, "idempotency_conflict")


def test_an_invalid_key_is_400(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    for bad in ("", "x" * 256, "has space"):
        resp = client.simulate_post(MISC + "v", headers=hdr(key, bad))
        assert_error(resp, 400, "bad_request")
    assert value(client, key, "v") == 0


def test_the_record_expires_after_24_hours(
    client: Any, rclient: Any, settings: Settings, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    client.simulate_post(MISC + "ttl", headers=hdr(key, "ttl-key"))
    bucket = keys.bucket_of(tenant, "ttl", settings.buckets)
    node = node_of(rclient, keys.bucket_keys(bucket).values)
    # Only this tenant's records: another test's batch items may share the bucket.
    records = node.keys(f"c:{{{bucket}}}:i:{tenant}:*")
    assert len(records) == 1
    ttl = node.pttl(records[0])
    assert 24 * 3600 * 1000 - 60_000 < ttl <= 24 * 3600 * 1000


def test_a_repeated_batch_is_applied_once_and_answers_the_first_results(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    items = [{"namespace": f"b{i % 40}", "by": 1 + i % 2} for i in range(120)]
    items.append({"namespace": "bad.name"})
    first = client.simulate_post(BATCH, headers=hdr(key, "batch-1"), json={"increments": items})
    again = client.simulate_post(BATCH, headers=hdr(key, "batch-1"), json={"increments": items})
    assert again.json["data"] == first.json["data"]
    assert first.json["data"]["results"][-1]["error"]["error"] == "bad_request"
    assert value(client, key, "b0") == first.json["data"]["results"][80]["value"]
    other = items[:-1] + [{"namespace": "b0"}]
    resp = client.simulate_post(BATCH, headers=hdr(key, "batch-1"), json={"increments": other})
    assert_error(resp, 422, "idempotency_conflict")
    assert value(client, key, "b0") == first.json["data"]["results"][80]["value"]


def _app_with_timeout(settings: Settings) -> tuple[Any, Any]:
    store = make_store(replace(settings, redis_timeout=0.2, redis_client="lean"))
    return falcon.testing.TestClient(create_app(settings, store=store)), store


def test_a_retry_after_an_unknown_outcome_applies_once(
    settings: Settings, rclient: Any, new_tenant: NewTenant
) -> None:
    """A real fault: the node is busy past the timeout, the first attempt is a 503 (its
    increment waits in the node's socket buffer and runs later); the retry with the
    same key answers that attempt's value, and the counter moved once."""
    tenant, key = new_tenant()
    client, store = _app_with_timeout(settings)
    client.simulate_post(MISC + "r", headers=hdr(key), params={"by": "5"})
    node = node_of(rclient, keys.bucket_keys(keys.bucket_of(tenant, "r", settings.buckets)).values)
    busy = keep_busy(node, 800)
    first = client.simulate_post(MISC + "r", headers=hdr(key, "retry-me"), json={"by": 2})
    assert_error(first, 503, "unavailable")
    busy.join()
    time.sleep(0.2)
    retry = client.simulate_post(MISC + "r", headers=hdr(key, "retry-me"), json={"by": 2})
    assert retry.status_code == 200 and retry.json["data"]["value"] == 7
    assert value(client, key, "r") == 7
    store.close()


def test_a_batch_retry_after_an_unknown_outcome_applies_each_item_once(
    settings: Settings, rclient: Any, new_tenant: NewTenant
) -> None:
    tenant, key = new_tenant()
    client, store = _app_with_timeout(settings)
    items = [{"namespace": f"u{i}", "by": 2} for i in range(30)]
    client.simulate_post(BATCH, headers=hdr(key), json={"increments": items})  # hydrated
    node = node_of(rclient, keys.bucket_keys(keys.bucket_of(tenant, "u0", settings.buckets)).values)
    busy = keep_busy(node, 800)
    first = client.simulate_post(BATCH, headers=hdr(key, "b-retry"), json={"increments": items})
    busy.join()
    results = first.json["data"]["results"]
    assert results[0]["error"]["error"] == "unavailable"  # u0's node was busy
    time.sleep(0.2)
    retry = client.simulate_post(BATCH, headers=hdr(key, "b-retry"), json={"increments": items})
    assert retry.json["data"]["results"] == [{"namespace": f"u{i}", "value": 4} for i in range(30)]
    for i in range(30):
        assert value(client, key, f"u{i}") == 4
    store.close()
