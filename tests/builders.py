"""Settings and stores on the session's real servers, for fixtures and tests alike."""

from __future__ import annotations

from typing import Any, Protocol

import pytest

from service.api.pg import Database
from service.api.redis_access import open_access
from service.api.store import CounterStore
from service.settings import Settings, _parse_nodes


class NewTenant(Protocol):
    """The ``new_tenant`` fixture: a fresh tenant and its API key."""

    def __call__(self, prefix: str = "t") -> tuple[str, str]: ...


def backend_settings(
    request: pytest.FixtureRequest, kind: str, pg_dsn: str, **extra: Any
) -> Settings:
    """Settings for a "cluster" or "single" Redis backend, on the session's servers.

    Each backend writes its own database (see the ``pg_dsns`` fixture): ``pg_dsn``
    only chooses the server.
    """
    pg_dsn = request.getfixturevalue("pg_dsns")[kind]
    if kind == "cluster":
        nodes = request.getfixturevalue("cluster_servers")[0]
        return Settings(pg_dsn=pg_dsn, redis_nodes=_parse_nodes(nodes), redis_timeout=5.0, **extra)
    url = request.getfixturevalue("redis_single_url")
    return Settings(pg_dsn=pg_dsn, redis_url=url, redis_timeout=5.0, **extra)


def make_store(settings: Settings) -> CounterStore:
    return CounterStore(
        lambda: open_access(settings), Database(settings.pg_dsn, max_size=8), settings.buckets
    )
