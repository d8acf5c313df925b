"""PostgreSQL crashes under a running service: known counters keep counting, nothing stalls.

The service's write path is Redis; PostgreSQL is only read to hydrate a new
counter (keys are held in memory). While it is down, a meinheld worker must
neither wait on it (a wait blocks every request of the worker) nor turn away
the tenants whose keys it holds. This stops the session's PostgreSQL and starts it again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from tests.builders import NewTenant
from tests.e2e.http_client import request
from tests.e2e.server import Gunicorn, settings_env


def timed(url: str, method: str, path: str, key: str) -> tuple[int, Any, float]:
    started = time.monotonic()
    status, body, _ = request(url, method, path, key)
    return status, body, time.monotonic() - started


def test_known_counters_count_on_while_postgres_is_down(
    cluster_settings: Settings, pg_servers: tuple[str, Any], new_tenant: NewTenant, tmp_path: Path
) -> None:
    _, server = pg_servers
    if server is None:
        pytest.skip("PostgreSQL is external (COUNTER_TEST_PG_DSN): this test cannot stop it")
    env = settings_env(cluster_settings, COUNTER_WORKERS="1")
    service = Gunicorn(env, tmp_path / "gunicorn.log")
    _, key = new_tenant()
    known, new = "/v1/misc/counter/known", "/v1/misc/counter/brand-new"
    try:
        service.wait_ready()
        assert request(service.url, "POST", known, key)[1]["data"]["value"] == 1
        server.stop(mode="immediate")

        for n in range(2, 12):  # the key and the counter are known: served from Redis
            status, body, took = timed(service.url, "POST", known, key)
            assert status == 200 and body["data"]["value"] == n
            assert took < 1.0, f"an increment waited {took:.2f} s on PostgreSQL"
        status, body, took = timed(service.url, "POST", new, key)  # needs a PostgreSQL read
        assert status == 503 and body["error"] == "unavailable"
        assert took < 1.0, f"a 503 took {took:.2f} s"
        status, body, took = timed(service.url, "GET", known, key)
        assert status == 200 and body["data"]["value"] == 11 and took < 1.0

        server.start_again()
        deadline = time.monotonic() + 30
        while request(service.url, "POST", new, key)[0] != 200:
            assert time.monotonic() < deadline, "not back 30 s after PostgreSQL returned"
            time.sleep(0.2)
        assert request(service.url, "POST", known, key)[1]["data"]["value"] == 12
        log = service.log.read_text()
        assert log.count("postgres unavailable") == 1 and log.count("postgres available again") == 1
        assert "error connecting" not in log  # psycopg's pool logs no line per attempt
    finally:
        if not server.running():
            server.start_again()
        service.stop()
