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

from service import keys
from service.api.errors import IdempotencyConflict
from service.api.idempotency import TTL_MS, Idempotency, is_conflict
from service.api.metrics import HYDRATIONS
from service.api.pg import Database
from service.api.redis_access import REPLID, CounterRedis, Part, RedisUnavailable, Refused
from service.errors import BackendUnavailable, OutcomeUnknown
from service.logs import OutageLog
from service.scripts import INCR, SET, Script

log = logging.getLogger("counter.store")
NEEDS_HYDRATION = -1
UNAVAILABLE = "Counter store unavailable, retry later"
MAY_NOT_HAVE_APPLIED = "Counter store unavailable, increment may not have applied"
CONFLICT = "Idempotency-Key already used for another request within 24 h"


class CounterStore:
    """Counting semantics; knows nothing of HTTP."""

    def __init__(
        self, redis_factory: Callable[[], CounterRedis], db: Database, n_buckets: int
    ) -> None:
        self._redis_factory = redis_factory
        self._redis: CounterRedis | None = None
        self._lock = threading.Lock()
        self._outage = OutageLog(log, "redis")
        self.db = db
        self.n_buckets = n_buckets

    @property
    def redis(self) -> CounterRedis:
        """The client, created on first use: never before gunicorn forks."""
        if self._redis is None:
            with self._lock:
                if self._redis is None:
                    try:
                        self._redis = self._redis_factory()
                    except Exception as exc:  # cluster discovery fails with many error types
                        self._outage.failed(repr(exc))
                        raise BackendUnavailable("redis", UNAVAILABLE) from None
        return self._redis

    def increment(
        self,
        tenant: str,
        namespace: str,
        by: int = 1,
        idem: Idempotency | None = None,
        item: int | None = None,
    ) -> int:
        """Add ``by`` (validated by the caller: 1 ≤ by ≤ MAX_BY) and return the new value.

        With ``idem``: applied at most once per key (see ``service.api.idempotency``);
        ``item``: the index of a batch's item sent on its own.
        """
        field = keys.member(tenant, namespace)
        bucket = keys.bucket_of_member(field, self.n_buckets)
        now_ms = int(time.time() * 1000)
        extra: tuple[str, ...] = ()
        fp, ttl = "", 0
        if idem is not None:
            extra = (keys.idempotency_record(bucket, tenant, idem.digest, item),)
            fp, ttl = idem.fingerprint, TTL_MS
        value = self._incr(bucket, (field, now_ms, "", 0, by, fp, ttl), extra)
        if value == NEEDS_HYDRATION:
            epoch, seed = self.db.read_counter(bucket, tenant, namespace)
            HYDRATIONS.inc()
            value = self._incr(bucket, (field, now_ms, seed, epoch, by, fp, ttl), extra)
        return value

    def set(self, tenant: str, namespace: str, value: int, idem: Idempotency | None = None) -> int:
        """Replace the value, raising the epoch past PostgreSQL's (read first: a set that
        Redis lost in a failover may be there with a higher epoch) and Redis's."""
        field = keys.member(tenant, namespace)
        bucket = keys.bucket_of_member(field, self.n_buckets)
        pg_epoch = self.db.read_counter(bucket, tenant, namespace)[0]
        extra: tuple[str, ...] = ()
        fp, ttl = "", 0
        if idem is not None:
            extra = (keys.idempotency_record(bucket, tenant, idem.digest),)
            fp, ttl = idem.fingerprint, TTL_MS
        now_ms = int(time.time() * 1000)
        return self._run(SET, bucket, (field, now_ms, pg_epoch, value, fp, ttl), extra)

    def get(self, tenant: str, namespace: str) -> int:
        field = keys.member(tenant, namespace)
        bucket = keys.bucket_of_member(field, self.n_buckets)
        try:
            redis = self.redis
            raw = redis.call(bucket, "HGET", redis.keys[bucket].values, field)
        except RedisUnavailable as exc:
            self._outage.failed(exc)
            raise BackendUnavailable("redis", UNAVAILABLE) from None
        self._outage.ok()
        if raw is not None:
            return int(raw)
        return self.db.read_counter(bucket, tenant, namespace)[1]

    def _incr(self, bucket: int, args: tuple[Part, ...], extra: tuple[str, ...]) -> int:
        return self._run(INCR, bucket, args, extra)

    def _run(
        self, script: Script, bucket: int, args: tuple[Part, ...], extra: tuple[str, ...]
    ) -> int:
        try:
            value = int(self.redis.run(script, bucket, *args, REPLID, extra=extra))
        except Refused as exc:
            if is_conflict(str(exc)):
                raise IdempotencyConflict(CONFLICT) from None
            self._outage.failed(exc)
            raise OutcomeUnknown("redis", MAY_NOT_HAVE_APPLIED) from None
        except RedisUnavailable as exc:
            # Unknown outcome (timeout, dropped connection) or refused (down):
            # never guess, never resend. The client may retry.
            self._outage.failed(exc)
            raise OutcomeUnknown("redis", MAY_NOT_HAVE_APPLIED) from None
        self._outage.ok()
        return value

    def outage_failed(self, exc: Exception) -> None:
        """A Redis call of another module (batches) failed: logged once per outage."""
        self._outage.failed(exc)

    def outage_ok(self) -> None:
        self._outage.ok()

    def ping(self) -> bool:
        try:
            return self.redis.ping()
        except BackendUnavailable:
            return False

    def stuck(self) -> bool:
        """A Redis call has waited well past every deadline: the worker should be replaced."""
        return self._redis is not None and self._redis.stuck()

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()
        self.db.close()
