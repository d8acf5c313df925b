"""Redis client construction: one Redis node or a Redis Cluster, same interface.

Retries are off (``Retry(NoBackoff(), 0)``): redis-py would otherwise resend a
command after a timeout or a dropped connection, which re-runs the increment
script and can count twice. A request whose outcome is unknown answers 503.
Redirections (MOVED/ASK/TRYAGAIN) are still followed: the node refused the
command, so following them cannot double-apply it.

Credentials and TLS (``COUNTER_REDIS_USERNAME``/``PASSWORD``/``TLS``/``TLS_*``) are
the same for this client and the lean one (``tls_context`` builds the latter's).
"""

from __future__ import annotations

import ssl
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from service.settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The client side of TLS to Redis: server certificate and host name verified."""
    if not settings.redis_tls:
        return None
    context = ssl.create_default_context(cafile=settings.redis_tls_ca)
    if settings.redis_tls_cert:
        context.load_cert_chain(settings.redis_tls_cert, settings.redis_tls_key)
    return context


def _security(settings: Settings) -> dict[str, Any]:
    """redis-py's arguments for AUTH and TLS, the same for one node and a cluster."""
    out: dict[str, Any] = {}
    if settings.redis_password is not None:
        out["password"] = settings.redis_password
        out["username"] = settings.redis_username
    if settings.redis_tls:
        out.update(
            ssl_ca_certs=settings.redis_tls_ca,
            ssl_certfile=settings.redis_tls_cert,
            ssl_keyfile=settings.redis_tls_key,
            ssl_cert_reqs="required",
            ssl_check_hostname=True,
        )
    return out


def connect(settings: Settings) -> Redis | RedisCluster:
    """Build a client; redis-py connects lazily for a single node, eagerly for a cluster."""
    common: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
        **_security(settings),
    }
    if settings.cluster:
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in settings.redis_nodes
            ],
            require_full_coverage=True,
            ssl=settings.redis_tls,
            **common,
        )
    assert settings.redis_url is not None
    url = settings.redis_url
    if settings.redis_tls and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://") :]  # the scheme selects redis-py's TLS class
    return Redis.from_url(url, **common)
