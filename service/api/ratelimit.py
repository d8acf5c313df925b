"""Per-key rate limits: GCRA in Redis (``lua/ratelimit.lua``), on Redis's clock.

The limit is decided before the increment and in a round trip of its own: the
key's state ``rl:{<key id>}`` and the counter's bucket live in different hash
slots, so on a cluster they cannot share one script. A refused request therefore
never reaches the increment, and the script writes nothing for it.

PERF: an unlimited key (the default) costs one attribute test here and nothing in
Redis; a limited key one more pipelined call (cost in ``benchmarks/auth_bench.py``).

Headers follow the IETF draft (draft-ietf-httpapi-ratelimit-headers):
``RateLimit-Policy: "key";q=<burst>;w=<seconds to refill the burst>`` and
``RateLimit: "key";r=<remaining>;t=<seconds until the burst is full again>``, on
every answer to a limited key; a 429 adds ``Retry-After`` (whole seconds, >= 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from service.api.errors import RateLimited
from service.api.redis_access import CounterRedis, RedisUnavailable
from service.apikeys import Grant
from service.errors import BackendUnavailable
from service.scripts import RATELIMIT

UNAVAILABLE = "Rate limiter unavailable, retry later"


class RateLimiter:
    def __init__(self, redis: Callable[[], CounterRedis]) -> None:
        self._redis = redis  # the store's client, created on first use (after fork)

    def check(self, grant: Grant) -> dict[str, str]:
        """Count one request of ``grant``'s key: its RateLimit headers, or RateLimited (429)."""
        rate, burst = grant.rate, grant.burst
        if rate is None or burst is None:
            return {}
        interval_us = max(1.0, 1e6 / rate)
        try:
            reply = self._redis().run_for_key(RATELIMIT, grant.key_id, repr(interval_us), burst)
        except RedisUnavailable:
            raise BackendUnavailable("redis", UNAVAILABLE) from None
        allowed, remaining, retry_ms, reset_ms = (int(x) for x in reply)
        headers = {
            "RateLimit-Policy": f'"key";q={burst};w={max(1, math.ceil(burst / rate))}',
            "RateLimit": f'"key";r={remaining};t={math.ceil(reset_ms / 1000)}',
        }
        if not allowed:
            retry_after = max(1, math.ceil(retry_ms / 1000))
            headers["Retry-After"] = str(retry_after)
            raise RateLimited(
                f"Rate limit of this API key exceeded ({rate:g} requests per second, "
                f"burst {burst}): retry after {retry_after} s",
                headers,
            )
        return headers
