"""Where the test suite gets its real Redis and PostgreSQL servers.

In order of preference: servers named by environment variables
(``COUNTER_TEST_REDIS_NODES``, ``COUNTER_TEST_REDIS_URL``, ``COUNTER_TEST_PG_DSN``),
throwaway local processes started from installed binaries (``devstack``), or
containers through testcontainers when a Docker engine answers. Never a mock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from devstack import PostgresServer, RedisCluster, RedisSingle, pg_bindir
from service.migrate import migrate
from service.settings import Settings


def docker_available() -> tuple[bool, str]:
    """(True, "") when a Docker engine answers a ping, else (False, why not)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception as exc:  # any failure means: no usable engine here
        return False, f"no Docker engine reachable ({type(exc).__name__})"
    return True, ""


@contextmanager
def redis_cluster(base: Path) -> Iterator[tuple[str, RedisCluster | None]]:
    """Yields ``host:port,...`` of a 3-master cluster, and the server object we own."""
    if os.environ.get("COUNTER_TEST_REDIS_NODES"):
        yield os.environ["COUNTER_TEST_REDIS_NODES"], None
        return
    if shutil.which("redis-server") is None:
        raise RuntimeError("redis-server is not installed: apt-get install redis-server")
    cluster = RedisCluster(base, masters=3)
    try:
        yield cluster.start(), cluster
    finally:
        cluster.stop()


@contextmanager
def redis_single(base: Path) -> Iterator[str]:
    if os.environ.get("COUNTER_TEST_REDIS_URL"):
        yield os.environ["COUNTER_TEST_REDIS_URL"]
        return
    server = RedisSingle(base)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def postgres(base: Path) -> Iterator[tuple[str, PostgresServer | None]]:
    """Yields a DSN, and the server object when we started a local one."""
    if os.environ.get("COUNTER_TEST_PG_DSN"):
        yield os.environ["COUNTER_TEST_PG_DSN"], None
        return
    if pg_bindir() is None:
        ok, why = docker_available()
        if not ok:
            raise RuntimeError(f"no PostgreSQL binaries and {why}")
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16", driver=None) as container:
            yield container.get_connection_url(), None
        return
    server = PostgresServer()
    try:
        yield server.start(), server
    finally:
        server.stop()
        server.cleanup()


def create_empty_database(dsn: str, name: str) -> str:
    """Create database ``name``, empty (not migrated), on ``dsn``'s server; its DSN."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_conninfo("", **{**conninfo_to_dict(dsn), "dbname": name})


def create_database(dsn: str, name: str) -> str:
    """Create database ``name`` on ``dsn``'s server (migrated, unless copied from a
    template: ``dsn``'s own database when its name starts with "counter_template");
    its DSN. Idempotent for a name that exists."""
    params = conninfo_to_dict(dsn)
    source = str(params.get("dbname", ""))
    target = make_conninfo("", **{**params, "dbname": name})
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return target
        if source.startswith("counter_template"):
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(source)
                )
            )
            return target
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(Settings(pg_dsn=target, redis_url="redis://unused:1/0"))
    return target
