"""HTTP resources: parse, validate, translate. Counting lives in CounterStore."""

from __future__ import annotations

import falcon
import orjson

from service.api.auth import Authenticator, require_scope
from service.api.clock import utc_timestamp
from service.api.errors import BadRequest
from service.api.metrics import BatchedCounter, render
from service.api.ratelimit import RateLimiter
from service.api.store import CounterStore
from service.keys import INVALID_NAMESPACE, is_valid_namespace

KEY_ENV = "HTTP_REQUIEMS_API_KEY"  # WSGI name of the requiems-api-key header


class CounterResource:
    """``/v1/{misc,technology}/counter/{namespace}``: POST increments, GET reads."""

    def __init__(
        self,
        store: CounterStore,
        auth: Authenticator,
        max_body: int,
        increments: BatchedCounter,
        limiter: RateLimiter,
    ) -> None:
        self.store = store
        self.auth = auth
        self.limiter = limiter
        self.max_body = max_body
        self.increments = increments

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        tenant = self._admit(req, resp, namespace, "read")
        _ok(resp, namespace, self.store.get(tenant, namespace))

    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        tenant = self._admit(req, resp, namespace, "increment")
        value = self.store.increment(tenant, namespace)
        self.increments.inc()
        _ok(resp, namespace, value)

    def _admit(self, req: falcon.Request, resp: falcon.Response, namespace: str, scope: str) -> str:
        """Authenticate, check scope, validate, then rate-limit; raises before anything
        is touched (a refused request is not counted against the key's limit)."""
        # PERF: read the header from the WSGI environ, skipping Falcon's lookup.
        grant = self.auth.authenticate(req.env.get(KEY_ENV))
        require_scope(grant, scope)
        # Always validate untrusted input, on the full (percent-decoded) string.
        if not is_valid_namespace(namespace):
            raise BadRequest(INVALID_NAMESPACE)
        length = req.content_length
        if length:
            if length > self.max_body:
                raise falcon.HTTPContentTooLarge()
            req.bounded_stream.read()  # drain so keep-alive stays in sync; body unused
        if grant.rate is not None:  # PERF: unlimited keys skip the limiter entirely
            resp.set_headers(self.limiter.check(grant))
        return grant.tenant


def _ok(resp: falcon.Response, namespace: str, value: int) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(
        {
            "data": {"namespace": namespace, "value": value},
            "metadata": {"timestamp": utc_timestamp()},
        }
    )


class HealthResource:
    """``/healthz``: this worker's loop answers and no Redis call of it is stuck.

    No backend is consulted (a Redis outage is ``/readyz``'s business): it fails
    only when a command has waited well past every deadline, which the deadlines
    make impossible unless the worker itself is broken, so restarting helps.
    """

    def __init__(self, store: CounterStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        if self.store.stuck():
            resp.status = 503
            resp.data = b'{"status":"stuck"}'
        else:
            resp.data = b'{"status":"ok"}'


class ReadyResource:
    """``/readyz``: 200 when Redis and PostgreSQL answer and this worker holds the API
    keys, 503 naming what does not."""

    def __init__(self, store: CounterStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "redis": self.store.ping(),
            "postgres": self.store.db.ping(),
            "keys": self.auth.loaded,  # this worker has loaded the API keys once
        }
        resp.content_type = falcon.MEDIA_JSON
        resp.status = 200 if all(checks.values()) else 503
        resp.data = orjson.dumps(
            {"status": "ok" if resp.status == 200 else "unavailable", "checks": checks}
        )


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = render()
