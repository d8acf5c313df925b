"""Session-wide real servers: a 3-master Redis Cluster, one Redis node, PostgreSQL.

Integration and end-to-end tests run once per Redis backend (``cluster`` and
``single``): the same code must work on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import falcon.testing
import pytest
from redis import Redis
from redis.cluster import RedisCluster as RedisClusterClient

from devstack import PostgresServer, RedisCluster
from service.api.app import create_app
from service.api.keyset import KeySet
from service.api.store import CounterStore
from service.migrate import migrate
from service.redis_conn import connect
from service.settings import Settings, _parse_nodes
from tests import backends
from tests.builders import NewTenant, backend_settings, make_store
from tests.keypool import KeyPool, KeySets


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def cluster_servers(run_dir: Path) -> Iterator[tuple[str, RedisCluster | None]]:
    with backends.redis_cluster(run_dir / "cluster") as nodes_and_server:
        yield nodes_and_server


@pytest.fixture(scope="session")
def redis_single_url(run_dir: Path) -> Iterator[str]:
    with backends.redis_single(run_dir / "single") as url:
        yield url


@pytest.fixture(scope="session")
def pg_servers(run_dir: Path) -> Iterator[tuple[str, PostgresServer | None]]:
    with backends.postgres(run_dir / "pg") as dsn_and_server:
        dsn = dsn_and_server[0]
        migrate(Settings(pg_dsn=dsn, redis_url="redis://unused:1/0"))
        yield dsn_and_server


@pytest.fixture(scope="session")
def pg_dsns(pg_servers: tuple[str, PostgresServer | None]) -> dict[str, str]:
    """A database per Redis backend ("cluster", "single") and a migrated template.

    PostgreSQL records which Redis history each bucket's counts come from (bucket
    lineages): two Redis deployments flushing into one database would each find the
    other's lineage current and their own stale. In production one Redis deployment
    writes one database; so here each backend gets its own.
    """
    main = pg_servers[0]
    return {
        "cluster": main,
        "single": backends.create_database(main, "counter_single"),
        "template": backends.create_database(main, "counter_template"),
    }


@pytest.fixture
def pg_dsn(request: pytest.FixtureRequest, pg_dsns: dict[str, str]) -> str:
    """The database of the test's Redis backend (the cluster's when it has none)."""
    callspec = getattr(request.node, "callspec", None)
    params = callspec.params if callspec is not None else {}
    kind = next((str(params[n]) for n in ("settings", "backend") if n in params), "cluster")
    return pg_dsns["single" if kind.startswith("single") else "cluster"]


@pytest.fixture
def own_pg_dsn(pg_dsns: dict[str, str]) -> str:
    """A fresh, migrated database, for a test that runs a Redis deployment of its own."""
    return backends.create_database(pg_dsns["template"], f"counter_{uuid.uuid4().hex[:12]}")


@pytest.fixture(
    scope="session", params=["cluster-lean", "single-lean", "cluster-redispy", "single-redispy"]
)
def settings(request: pytest.FixtureRequest, pg_dsns: dict[str, str]) -> Settings:
    """Settings for one Redis backend and hot-path client; dependent tests run on each."""
    kind, client = request.param.split("-")
    client = "redis-py" if client == "redispy" else client
    return backend_settings(request, kind, pg_dsns[kind], redis_client=client)


@pytest.fixture(params=["cluster", "single"])
def backend(request: pytest.FixtureRequest, pg_dsns: dict[str, str]) -> Settings:
    """Settings per Redis backend only, for code that always uses redis-py (the flusher)."""
    return backend_settings(request, request.param, pg_dsns[request.param])


@pytest.fixture
def r(backend: Settings) -> Iterator[Redis | RedisClusterClient]:
    """A redis-py client on ``backend``."""
    client = connect(backend)
    yield client
    client.close()


@pytest.fixture(scope="session")
def cluster_settings(
    pg_dsns: dict[str, str], cluster_servers: tuple[str, RedisCluster | None]
) -> Settings:
    return Settings(
        pg_dsn=pg_dsns["cluster"], redis_nodes=_parse_nodes(cluster_servers[0]), redis_timeout=5.0
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[CounterStore]:
    s = make_store(settings)
    yield s
    s.close()


@pytest.fixture
def rclient(settings: Settings) -> Iterator[Redis | RedisClusterClient]:
    """A redis-py client on the same servers, for inspecting what the service wrote."""
    client = connect(settings)
    yield client
    client.close()


@pytest.fixture(scope="session")
def key_sets() -> Iterator[KeySets]:
    """The API keys in memory, as a worker holds them: one thread per database."""
    sets = KeySets()
    yield sets
    sets.close()


@pytest.fixture
def key_set(pg_dsn: str, key_sets: KeySets) -> KeySet:
    """The key set of the test's database, shared by every test app on it."""
    return key_sets.get(pg_dsn)


@pytest.fixture(scope="session")
def key_pool(pg_dsns: dict[str, str], key_sets: KeySets) -> KeyPool:
    """Keys written to every backend's database (see ``pg_dsns``): the same key works on both."""
    return KeyPool([pg_dsns["cluster"], pg_dsns["single"]], key_sets)


@pytest.fixture
def new_tenant(key_pool: KeyPool) -> NewTenant:
    """Factory: a fresh tenant with an API key, so tests never share counters.

    The key was made ahead (``tests.keypool``): every running service holds it already.
    """
    return key_pool.take


@pytest.fixture
def client(settings: Settings, store: CounterStore, key_set: KeySet) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(replace(settings), store=store, keys=key_set))
