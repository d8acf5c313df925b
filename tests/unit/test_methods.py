"""Methods through the app alone (no server): 405 with Allow for any method a route lacks."""

from __future__ import annotations

import falcon.testing
import pytest

from service.api.app import create_app
from service.settings import Settings


@pytest.fixture(scope="module")
def client() -> falcon.testing.TestClient:
    # create_app opens no sockets: nothing here reaches Redis or PostgreSQL.
    settings = Settings(
        pg_dsn="postgresql://unused@127.0.0.1:1/x", redis_url="redis://127.0.0.1:1/0"
    )
    return falcon.testing.TestClient(create_app(settings))


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
@pytest.mark.parametrize("method", ["FOO", "QUERY", "M-SEARCH", "PATCH"])
def test_a_method_the_counter_lacks_is_405_with_its_allow(
    client: falcon.testing.TestClient, method: str
) -> None:
    resp = client.simulate_request(method, "/v1/technology/counter/x")
    assert resp.status_code == 405 and resp.json["error"] == "method_not_allowed"
    assert {m.strip() for m in resp.headers["allow"].split(",")} == {
        "GET",
        "HEAD",
        "POST",
        "PUT",
        "DELETE",
        "OPTIONS",
    }


@pytest.mark.filterwarnings("ignore::wsgiref.validate.WSGIWarning")
def test_an_unknown_method_on_an_unknown_route_is_404(client: falcon.testing.TestClient) -> None:
    assert client.simulate_request("FOO", "/nowhere").status_code == 404


def test_head_is_get_without_a_body(client: falcon.testing.TestClient) -> None:
    get, head = client.simulate_get("/healthz"), client.simulate_head("/healthz")
    assert head.status_code == get.status_code == 200
    assert head.content == b"" and head.headers["content-length"] == str(len(get.content))
