"""Applies ``migrations/*.sql`` in order, once each, and guards the bucket count.

The bucket count decides where every counter lives; a process configured with
another count than the database was created with would mis-route counters, so
``check_layout`` refuses to start it.
"""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import psycopg

from service import queries
from service.settings import Settings

log = logging.getLogger("counter.migrate")
LOCK_ID = 0x636F756E  # advisory lock: one migrator at a time
_SQL = queries.load("service", "migrate.sql")


class LayoutMismatch(RuntimeError):
    """The configured bucket count differs from the one recorded in PostgreSQL."""


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("service").joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text("utf-8")) for name in names]


def migrate(settings: Settings) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    applied_now: list[str] = []
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(_SQL["lock"], (LOCK_ID,))
        conn.execute(_SQL["create_history"])
        done = {row[0] for row in conn.execute(_SQL["applied"])}
        for name, sql in migration_files():
            if name in done:
                continue
            with conn.transaction():
                set_layout(conn, settings.buckets, settings.partitions)
                conn.execute(sql.encode())
                conn.execute(_SQL["record"], (name,))
            applied_now.append(name)
            log.info("migration applied", extra={"migration": name})
        conn.execute(_SQL["unlock"], (LOCK_ID,))
    check_layout(settings)
    return applied_now


def check_layout(settings: Settings) -> None:
    """Raise LayoutMismatch unless PostgreSQL records the configured bucket count."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        try:
            buckets = recorded(conn, "buckets")
        except psycopg.errors.UndefinedTable:
            buckets = None
    if buckets is None:
        raise LayoutMismatch("database is not migrated: run `counterctl migrate`")
    if int(buckets) != settings.buckets:
        raise LayoutMismatch(
            f"COUNTER_BUCKETS={settings.buckets} but the database was created with "
            f"{buckets} buckets; counters would be mis-routed, refusing to start"
        )


def recorded(conn: psycopg.Connection[Any], key: str) -> str | None:
    """What ``meta`` records of the layout under ``key`` ('buckets', 'partitions')."""
    row = conn.execute(_SQL["meta_value"], (key,)).fetchone()
    return None if row is None else str(row[0])


def set_layout(conn: psycopg.Connection[Any], buckets: int, partitions: int | str) -> None:
    """Tell this transaction's SQL (the migrations, repartition.sql) the layout to build."""
    conn.execute(_SQL["layout"], (str(buckets), str(partitions)))
