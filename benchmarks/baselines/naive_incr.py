"""Naive Redis baseline (NOT the product): one redis-py INCR per request on the Redis Cluster.

What a first version of a counter API would do: ``INCR naive:<namespace>`` with
redis-py's ``RedisCluster`` (hiredis parser when installed, default retries),
no tenant, no auth, no validation, no dirty marks, nothing written to
PostgreSQL. Nodes from ``BENCH_REDIS_NODES`` ("host:port,...").
"""

from __future__ import annotations

import os
from typing import Any

import falcon
import orjson
from redis.cluster import ClusterNode, RedisCluster

_client: Any = None


def _redis() -> Any:
    """Created on first use, i.e. in the worker after gunicorn forked (never shared)."""
    global _client
    if _client is None:
        nodes = [n.rsplit(":", 1) for n in os.environ["BENCH_REDIS_NODES"].split(",")]
        startup = [ClusterNode(h, int(p)) for h, p in nodes]  # type: ignore[no-untyped-call]
        _client = RedisCluster(startup_nodes=startup)
    return _client


class Incr:
    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace: str) -> None:
        value = _redis().incr(f"naive:{namespace}")
        resp.content_type = falcon.MEDIA_JSON
        resp.data = orjson.dumps({"data": {"namespace": namespace, "value": value}})


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data = b'{"status":"ok"}'


app = falcon.App()
app.add_route("/v1/misc/counter/{namespace}", Incr())
app.add_route("/healthz", Health())
