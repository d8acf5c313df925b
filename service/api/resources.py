"""HTTP resources: parse, validate, translate. Counting lives in CounterStore."""

from __future__ import annotations

from importlib import resources

import falcon
import orjson

from service.api import admin, idempotency
from service.api.amounts import amount, parse_body
from service.api.auth import Authenticator, require_scope
from service.api.clock import utc_timestamp
from service.api.errors import BadRequest
from service.api.info import counter_info, render_info
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
        # {namespace:path} also takes "<ns>/info" (Falcon cannot route both templates).
        base, slash, rest = namespace.partition("/")
        if slash and rest == "info" and is_valid_namespace(base):
            tenant = self._admit(req, resp, base, "read")
            read_body(req, self.max_body)
            render_info(resp, counter_info(self.store, tenant, base))
            return
        tenant = self._admit(req, resp, namespace, "read")
        read_body(req, self.max_body)  # drained, unused: keep-alive stays in sync
        _ok(resp, namespace, self.store.get(tenant, namespace))

    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        tenant = self._admit(req, resp, namespace, "increment")
        by = 1
        # PERF: the common increment has neither a query string nor a body.
        if req.query_string or req.content_length:
            by = amount(_one_param(req, "by"), parse_body(read_body(req, self.max_body)))
        idem = idempotency.from_header(req.env.get(idempotency.HEADER_ENV), "incr", namespace, by)
        value = self.store.increment(tenant, namespace, by, idem)
        self.increments.inc()
        _ok(resp, namespace, value)

    def on_put(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        """Set the counter (admin): ``{"value": N}``."""
        tenant = self._admit(req, resp, namespace, "admin")
        value = admin.new_value(read_body(req, self.max_body))
        idem = idempotency.from_header(req.env.get(idempotency.HEADER_ENV), "set", namespace, value)
        _ok(resp, namespace, self.store.set(tenant, namespace, value, idem))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        """Delete (admin): a set to 0 with a raised epoch; it reads 0 afterwards."""
        tenant = self._admit(req, resp, namespace, "admin")
        read_body(req, self.max_body)
        idem = idempotency.from_header(req.env.get(idempotency.HEADER_ENV), "set", namespace, 0)
        _ok(resp, namespace, self.store.set(tenant, namespace, 0, idem))

    def _admit(self, req: falcon.Request, resp: falcon.Response, namespace: str, scope: str) -> str:
        """Authenticate, check scope, validate, then rate-limit; raises before anything
        is touched (a refused request is not counted against the key's limit). The
        handler reads the body."""
        # PERF: read the header from the WSGI environ, skipping Falcon's lookup.
        grant = self.auth.authenticate(req.env.get(KEY_ENV))
        require_scope(grant, scope)
        # Always validate untrusted input, on the full (percent-decoded) string.
        if not is_valid_namespace(namespace):
            raise BadRequest(INVALID_NAMESPACE)
        if grant.rate is not None:  # PERF: unlimited keys skip the limiter entirely
            resp.set_headers(self.limiter.check(grant))
        return grant.tenant


def read_body(req: falcon.Request, max_body: int) -> bytes:
    """The whole body (keep-alive stays in sync), or 413 past ``max_body``."""
    length = req.content_length
    if not length:
        return b""
    if length > max_body:
        raise falcon.HTTPContentTooLarge()
    data: bytes = req.bounded_stream.read()
    return data


def _one_param(req: falcon.Request, name: str) -> str | None:
    """A query parameter given at most once (``?by=1&by=2`` is ambiguous: 400)."""
    value = req.params.get(name)
    if isinstance(value, list):
        raise BadRequest(f"Invalid {name}: give it once")
    return value


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


class OpenApiResource:
    """``/openapi.json``: the API's OpenAPI 3.1 description (``service/api/openapi.json``),
    served without a key so that tools and browsers can read it."""

    def __init__(self) -> None:
        self.body = resources.files("service.api").joinpath("openapi.json").read_bytes()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self.body


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = render()
