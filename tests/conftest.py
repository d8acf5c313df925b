"""Session-wide real servers: a 3-master Redis Cluster, one Redis node, PostgreSQL.

Integration and end-to-end tests run once per Redis backend (``cluster`` and
``single``): the same code must work on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from service.api.app import create_app
from service.api.pg import Database
from service.api.redis_access import open_access
from service.api.store import CounterStore
from service.apikeys import create_key
from service.migrate import migrate
from service.redis_conn import connect
from service.settings import Settings, _parse_nodes
from tests import backends


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def cluster_servers(run_dir: Path) -> Iterator[tuple[str, Any]]:
    with backends.redis_cluster(run_dir / "cluster") as nodes_and_server:
        yield nodes_and_server


@pytest.fixture(scope="session")
def redis_single_url(run_dir: Path) -> Iterator[str]:
    with backends.redis_single(run_dir / "single") as url:
        yield url


@pytest.fixture(scope="session")
def pg_servers(run_dir: Path) -> Iterator[tuple[str, Any]]:
    with backends.postgres(run_dir / "pg") as dsn_and_server:
        dsn = dsn_and_server[0]
        migrate(Settings(pg_dsn=dsn, redis_url="redis://unused:1/0"))
        yield dsn_and_server


@pytest.fixture(scope="session")
def pg_dsn(pg_servers: tuple[str, Any]) -> str:
    return pg_servers[0]


def backend_settings(
    request: pytest.FixtureRequest, kind: str, pg_dsn: str, **extra: Any
) -> Settings:
    """Settings for a "cluster" or "single" Redis backend, on the session's servers."""
    if kind == "cluster":
        nodes = request.getfixturevalue("cluster_servers")[0]
        return Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(nodes), redis_timeout=5.0, **extra)
    url = request.getfixturevalue("redis_single_url")
    return Settings(pg_dsn=pg_dsn, redis_url=url, redis_timeout=5.0, **extra)


@pytest.fixture(
    scope="session", params=["cluster-lean", "single-lean", "cluster-redispy", "single-redispy"]
)
def settings(request: pytest.FixtureRequest, pg_dsn: str) -> Settings:
    """Settings for one Redis backend and hot-path client; dependent tests run on each."""
    kind, client = request.param.split("-")
    client = "redis-py" if client == "redispy" else client
    return backend_settings(request, kind, pg_dsn, redis_client=client)


@pytest.fixture(params=["cluster", "single"])
def backend(request: pytest.FixtureRequest, pg_dsn: str) -> Settings:
    """Settings per Redis backend only, for code that always uses redis-py (the flusher)."""
    return backend_settings(request, request.param, pg_dsn)


@pytest.fixture
def r(backend: Settings) -> Iterator[Any]:
    """A redis-py client on ``backend``."""
    client = connect(backend)
    yield client
    client.close()


@pytest.fixture(scope="session")
def cluster_settings(pg_dsn: str, cluster_servers: tuple[str, Any]) -> Settings:
    return Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(cluster_servers[0]), redis_timeout=5.0)


def make_store(settings: Settings) -> CounterStore:
    return CounterStore(
        lambda: open_access(settings), Database(settings.pg_dsn, max_size=8), settings.buckets
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[CounterStore]:
    s = make_store(settings)
    yield s
    s.close()


@pytest.fixture
def rclient(settings: Settings) -> Iterator[Any]:
    """A redis-py client on the same servers, for inspecting what the service wrote."""
    client = connect(settings)
    yield client
    client.close()


@pytest.fixture
def new_tenant(pg_dsn: str) -> Any:
    """Factory: a fresh tenant with an API key, so tests never share counters."""

    def make(prefix: str = "t") -> tuple[str, str]:
        tenant = f"{prefix}{uuid.uuid4().hex[:12]}"
        return tenant, create_key(pg_dsn, tenant)[1]

    return make


@pytest.fixture
def client(settings: Settings, store: CounterStore) -> Any:
    import falcon.testing

    return falcon.testing.TestClient(create_app(replace(settings), store=store))
