"""Redis client construction: one Redis node or a Redis Cluster, same interface.

Retries are off (``Retry(NoBackoff(), 0)``): redis-py would otherwise resend a
command after a timeout or a dropped connection, which re-runs the increment
script and can count twice. A request whose outcome is unknown answers 503.
Redirections (MOVED/ASK/TRYAGAIN) are still followed: the node refused the
command, so following them cannot double-apply it.
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from service.settings import Settings


def connect(settings: Settings) -> Redis | RedisCluster:
    """Build a client; redis-py connects lazily for a single node, eagerly for a cluster."""
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if settings.cluster:
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in settings.redis_nodes
            ],
            require_full_coverage=True,
            **common,
        )
    assert settings.redis_url is not None
    return Redis.from_url(settings.redis_url, **common)
