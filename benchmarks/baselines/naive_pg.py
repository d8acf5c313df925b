"""Naive PostgreSQL baseline (NOT the product): one upsert per request, committed.

What a counter API without a cache would do: ``INSERT ... ON CONFLICT DO UPDATE
... RETURNING value`` in its own table, autocommit with ``synchronous_commit =
on`` (each increment waits for its WAL flush), one psycopg 3 connection per
worker. No auth, no validation. DSN from ``BENCH_PG_DSN``; the harness creates
the table (``TABLE_SQL``) before starting the app.
"""

from __future__ import annotations

import os
from typing import Any

import falcon
import orjson
import psycopg

TABLE_SQL = (
    "CREATE TABLE IF NOT EXISTS naive_counters (namespace text PRIMARY KEY, value bigint NOT NULL)"
)
UPSERT = (
    "INSERT INTO naive_counters (namespace, value) VALUES (%s, 1) ON CONFLICT (namespace)"
    " DO UPDATE SET value = naive_counters.value + 1 RETURNING value"
)
_conn: Any = None


def _pg() -> Any:
    """One connection per worker, opened after fork on first use."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(os.environ["BENCH_PG_DSN"], autocommit=True)
        _conn.execute("SET synchronous_commit = on")
    return _conn


class Upsert:
    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace: str) -> None:
        row = _pg().execute(UPSERT, (namespace,), prepare=True).fetchone()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"data": {"namespace": namespace, "value": row[0]}})


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status":"ok"}'


app = falcon.App()
app.add_route("/v1/misc/counter/{namespace}", Upsert())
app.add_route("/healthz", Health())
