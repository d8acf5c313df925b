"""CounterStore: increments and reads over Redis, hydrating from PostgreSQL.

The hot path of an increment is one Lua call (one round trip, no PostgreSQL).
Only a counter that is missing from Redis (new, or lost with a node) costs one
PostgreSQL read, after which the script is called again with that seed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from service import keys
from service.errors import Unavailable
from service.metrics import HYDRATIONS
from service.pg import Database
from service.scripts import register

log = logging.getLogger("counter.store")
NEEDS_HYDRATION = -1


class CounterStore:
    """Counting semantics; knows nothing of HTTP."""

    def __init__(self, redis_factory: Callable[[], Any], db: Database, n_buckets: int) -> None:
        self._redis_factory = redis_factory
        self._redis: Any = None
        self._incr: Any = None
        self._lock = threading.Lock()
        self.db = db
        self.n_buckets = n_buckets
        # PERF: key names of every bucket built once instead of per request.
        self._keys = [keys.bucket_keys(b) for b in range(n_buckets)]

    @property
    def redis(self) -> Any:
        """The client, created on first use: never before gunicorn forks."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    try:
                        client = self._redis_factory()
                    except Exception as exc:  # cluster discovery fails with non-RedisErrors too
                        log.warning("redis connect failed", extra={"error": repr(exc)})
                        raise Unavailable("Counter store unavailable, retry later") from None
                    self._incr = register(client, "incr")
                    self._redis = client
        return self._redis

    def increment(self, tenant: str, namespace: str) -> int:
        bucket = keys.bucket_of(tenant, namespace, self.n_buckets)
        bkeys = self._keys[bucket]
        field = keys.member(tenant, namespace)
        redis = self.redis
        now_ms = int(time.time() * 1000)
        value = self._call(bkeys, field, now_ms, "", 0, redis)
        if value == NEEDS_HYDRATION:
            epoch, seed = self.db.read_counter(bucket, tenant, namespace)
            HYDRATIONS.inc()
            value = self._call(bkeys, field, now_ms, str(seed), epoch, redis)
        return int(value)

    def get(self, tenant: str, namespace: str) -> int:
        bucket = keys.bucket_of(tenant, namespace, self.n_buckets)
        try:
            raw = self.redis.hget(self._keys[bucket].values, keys.member(tenant, namespace))
        except RedisError as exc:
            log.warning("redis read failed", extra={"error": repr(exc)})
            raise Unavailable("Counter store unavailable, retry later") from None
        if raw is not None:
            return int(raw)
        return self.db.read_counter(bucket, tenant, namespace)[1]

    def _call(
        self, bkeys: keys.BucketKeys, field: str, now_ms: int, seed: str, epoch: int, redis: Any
    ) -> int:
        try:
            result: int = self._incr(
                keys=[bkeys.values, bkeys.dirty, bkeys.epochs],
                args=[field, now_ms, seed, epoch],
                client=redis,
            )
        except RedisError as exc:
            # Unknown outcome (timeout, dropped connection) or refused (down):
            # never guess, never resend. The client may retry.
            log.warning("redis increment failed", extra={"error": repr(exc)})
            raise Unavailable("Counter store unavailable, increment may not have applied") from None
        return result

    def ping(self) -> bool:
        try:
            return bool(self.redis.ping())
        except (RedisError, Unavailable):
            return False
