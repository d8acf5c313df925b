"""CORS (issue 15, item 6): off by default; preflight answered without a key; the
headers on every status, errors included."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import falcon.testing
import pytest

from service.api.app import create_app
from service.api.store import CounterStore
from service.settings import Settings, SettingsError
from tests.builders import NewTenant
from tests.integration.test_api_contract import MISC, hdr

ORIGIN = "https://app.example"


@pytest.fixture
def cors_client(settings: Settings, store: CounterStore) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(
        create_app(replace(settings, cors_origins=(ORIGIN,)), store=store)
    )


def test_preflight_is_answered_without_a_key(cors_client: Any) -> None:
    resp = cors_client.simulate_options(
        MISC + "x",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "requiems-api-key",
        },
    )
    assert resp.status_code == 204
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in resp.headers["access-control-allow-methods"]
    assert "requiems-api-key" in resp.headers["access-control-allow-headers"]
    other = cors_client.simulate_options(
        MISC + "x",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in other.headers


@pytest.mark.parametrize(
    ("method", "path", "key", "status"),
    [
        ("POST", MISC + "c", True, 200),
        ("GET", MISC + "a.b", True, 400),
        ("POST", MISC + "c", False, 401),
        ("GET", "/nope", True, 404),
        ("PATCH", MISC + "c", True, 405),
        ("POST", "/v1/misc/counters", True, 200),
    ],
)
def test_every_status_carries_the_headers(
    cors_client: Any, new_tenant: NewTenant, method: str, path: str, key: bool, status: int
) -> None:
    _, api_key = new_tenant()
    headers = {"Origin": ORIGIN, **(hdr(api_key) if key else {})}
    body: dict[str, Any] | None = {"increments": []} if path.endswith("counters") else None
    resp = cors_client.simulate_request(method, path, headers=headers, json=body)
    assert resp.status_code == status
    assert resp.headers["access-control-allow-origin"] == ORIGIN
    assert "Origin" in resp.headers["vary"]


def test_off_by_default(client: Any, new_tenant: NewTenant) -> None:
    _, key = new_tenant()
    resp = client.simulate_post(MISC + "c", headers={"Origin": ORIGIN, **hdr(key)})
    assert "access-control-allow-origin" not in resp.headers


def test_the_variable_is_validated() -> None:
    env = {"COUNTER_PG_DSN": "postgresql://x@h/db", "COUNTER_REDIS_URL": "redis://h:1/0"}
    ok = Settings.from_env({**env, "COUNTER_CORS_ORIGINS": f"{ORIGIN}, http://localhost:3000"})
    assert ok.cors_origins == (ORIGIN, "http://localhost:3000")
    assert Settings.from_env(env).cors_origins == ()
    with pytest.raises(SettingsError):
        Settings.from_env({**env, "COUNTER_CORS_ORIGINS": "not an origin"})
