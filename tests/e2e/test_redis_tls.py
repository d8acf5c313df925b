"""The service under gunicorn + meinheld on Redis that demands TLS and AUTH.

Every wait of the handshake goes through meinheld's loop, and the requests in
flight share one pipelined TLS connection per node (``devstack/secure_redis.py``
starts the servers).
"""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.secure_redis import PASSWORD, USER, SecureRedis, make_certs
from tests.builders import NewTenant
from tests.e2e.http_client import hammer, request
from tests.e2e.server import Gunicorn


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    base = tmp_path_factory.mktemp("secure-redis-e2e")
    servers = SecureRedis(base, make_certs(base / "certs"))
    try:
        yield servers
    finally:
        servers.stop()


def wait_alive(server: Gunicorn, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, server.log.read_text()[-2000:]
            time.sleep(0.2)


def service_env(secure: SecureRedis, pg_dsn: str, **redis: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTER_")}
    certs = secure.certs
    return {
        **env,
        "COUNTER_PG_DSN": pg_dsn,
        "COUNTER_WORKERS": "1",
        "COUNTER_REDIS_TLS": "1",
        "COUNTER_REDIS_TLS_CA": str(certs.ca),
        "COUNTER_REDIS_TLS_CERT": str(certs.client_cert),
        "COUNTER_REDIS_TLS_KEY": str(certs.client_key),
        "COUNTER_REDIS_USERNAME": USER,
        "COUNTER_REDIS_PASSWORD": PASSWORD,
        **redis,
    }


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_concurrent_increments_over_tls_and_acl_auth_are_exact(
    secure: SecureRedis, pg_dsn: str, new_tenant: NewTenant, tmp_path: Path, topology: str
) -> None:
    if topology == "single":
        redis = {"COUNTER_REDIS_URL": f"redis://127.0.0.1:{secure.start_single_tls_acl()}/0"}
    else:
        nodes = ",".join(f"127.0.0.1:{p}" for p in secure.start_cluster_tls_acl())
        redis = {"COUNTER_REDIS_NODES": nodes}
    log = tmp_path / "gunicorn.log"
    server = Gunicorn(service_env(secure, pg_dsn, **redis), log)
    try:
        server.wait_ready()
        _, key = new_tenant()
        values = hammer(server.url, "/v1/misc/counter/tls", key, threads=16, each=20)
        assert sorted(values) == list(range(1, 321))  # one pipelined TLS connection, exact
        for i in range(12):  # counters on every master of the cluster
            assert request(server.url, "POST", f"/v1/misc/counter/n{i}", key)[0] == 200
    finally:
        server.stop()
    assert PASSWORD not in log.read_text()


def test_a_wrong_password_is_a_json_503_and_never_logged(
    secure: SecureRedis, pg_dsn: str, new_tenant: NewTenant, tmp_path: Path
) -> None:
    wrong = "not-" + PASSWORD
    url = f"redis://127.0.0.1:{secure.start_single_tls_acl()}/0"
    log = tmp_path / "gunicorn.log"
    server = Gunicorn(
        service_env(secure, pg_dsn, COUNTER_REDIS_URL=url, COUNTER_REDIS_PASSWORD=wrong), log
    )
    try:
        _, key = new_tenant()
        wait_alive(server)  # /readyz stays 503 here
        status, body, _ = request(server.url, "POST", "/v1/misc/counter/x", key)
        assert status == 503 and body["error"] == "unavailable"
        assert wrong not in str(body)
    finally:
        server.stop()
    text = log.read_text()
    assert "WRONGPASS" in text or "unavailable" in text
    assert wrong not in text and PASSWORD not in text
