"""The three Redis operations the API needs, over either client.

``COUNTER_REDIS_CLIENT=lean`` (default) uses LeanRedis; ``redis-py`` uses the
general client. Both raise only ``RedisUnavailable``, so the store does not care
which one runs. The flusher and tools use redis-py directly (``redis_conn``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from redis.exceptions import RedisError

from service.fastpath.coop import loop_hooks, redis_wait
from service.fastpath.lean_redis import CommandRefused, LeanRedis, LeanScript
from service.fastpath.resp import ConnectionLost, pack
from service.redis_conn import connect
from service.scripts import lua_source
from service.settings import Settings


class RedisUnavailable(Exception):
    """Redis failed, refused, or did not answer in time (outcome unknown for writes)."""


class CounterRedis(Protocol):
    def incr(self, slot: int, keys: Sequence[str], args: Sequence[Any]) -> int: ...
    def hget(self, slot: int, key: str, field: str) -> bytes | None: ...
    def ping(self) -> bool: ...
    def close(self) -> None: ...


class LeanAccess:
    def __init__(self, client: LeanRedis) -> None:
        self.client = client
        self._incr = LeanScript(client, lua_source("incr"))

    def incr(self, slot: int, keys: Sequence[str], args: Sequence[Any]) -> int:
        try:
            return int(self._incr(slot, keys, args))
        except (ConnectionLost, CommandRefused) as exc:
            raise RedisUnavailable(str(exc)) from None

    def hget(self, slot: int, key: str, field: str) -> bytes | None:
        try:
            reply: bytes | None = self.client.execute(slot, pack("HGET", key, field))
        except (ConnectionLost, CommandRefused) as exc:
            raise RedisUnavailable(str(exc)) from None
        return reply

    def ping(self) -> bool:
        return self.client.ping_all()

    def close(self) -> None:
        self.client.close()


class RedisPyAccess:
    def __init__(self, client: Any) -> None:
        self.client = client
        self._incr = client.register_script(lua_source("incr"))

    def incr(self, slot: int, keys: Sequence[str], args: Sequence[Any]) -> int:
        try:
            return int(self._incr(keys=keys, args=args))
        except RedisError as exc:
            raise RedisUnavailable(repr(exc)) from None

    def hget(self, slot: int, key: str, field: str) -> bytes | None:
        try:
            reply: bytes | None = self.client.hget(key, field)
        except RedisError as exc:
            raise RedisUnavailable(repr(exc)) from None
        return reply

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False

    def close(self) -> None:
        self.client.close()


def open_access(settings: Settings) -> CounterRedis:
    """Build the configured client; called in the worker, after fork."""
    if settings.redis_client == "redis-py":
        return RedisPyAccess(connect(settings))
    if settings.cluster:
        return LeanAccess(
            LeanRedis(
                settings.redis_nodes,
                cluster=True,
                timeout=settings.redis_timeout,
                wait=redis_wait(),
                hooks=loop_hooks(),
            )
        )
    url = urlsplit(settings.redis_url or "")  # a plain redis://host:port[/0], see Settings
    addr = (url.hostname or "127.0.0.1", url.port or 6379)
    return LeanAccess(
        LeanRedis(
            [addr],
            cluster=False,
            timeout=settings.redis_timeout,
            wait=redis_wait(),
            hooks=loop_hooks(),
        )
    )
