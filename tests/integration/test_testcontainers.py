"""The same store against containerised servers, where a Docker engine is reachable.

Skipped, with the reason, on machines without one (the local-binary servers then
carry the suite); this keeps the testcontainers path of tests/backends.py honest.
"""

from __future__ import annotations

import pytest

from service.apikeys import create_key
from service.migrate import migrate
from service.settings import Settings
from tests.backends import docker_available
from tests.builders import make_store

available, why = docker_available()
pytestmark = pytest.mark.skipif(not available, reason=f"testcontainers: {why}")


def test_store_works_against_containerised_redis_and_postgres() -> None:
    from testcontainers.postgres import PostgresContainer
    from testcontainers.redis import RedisContainer

    with PostgresContainer("postgres:16", driver=None) as pg, RedisContainer("redis:7") as rc:
        dsn = pg.get_connection_url()
        url = f"redis://{rc.get_container_host_ip()}:{rc.get_exposed_port(6379)}/0"
        settings = Settings(pg_dsn=dsn, redis_url=url)
        migrate(settings)
        create_key(dsn, "containers")
        store = make_store(settings)
        assert [store.increment("containers", "c") for _ in range(3)] == [1, 2, 3]
        assert store.get("containers", "c") == 3
