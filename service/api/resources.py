"""HTTP resources: parse, validate, translate. Counting lives in CounterStore."""

from __future__ import annotations

import falcon
import orjson

from service.api.auth import Authenticator
from service.api.clock import utc_timestamp
from service.api.errors import BadRequest
from service.api.metrics import BatchedCounter, render
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
    ) -> None:
        self.store = store
        self.auth = auth
        self.max_body = max_body
        self.increments = increments

    def on_get(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        tenant = self._admit(req, namespace)
        _ok(resp, namespace, self.store.get(tenant, namespace))

    def on_post(self, req: falcon.Request, resp: falcon.Response, namespace: str = "") -> None:
        tenant = self._admit(req, namespace)
        value = self.store.increment(tenant, namespace)
        self.increments.inc()
        _ok(resp, namespace, value)

    def _admit(self, req: falcon.Request, namespace: str) -> str:
        """Authenticate, then validate; raises before anything is touched."""
        # PERF: read the header from the WSGI environ, skipping Falcon's lookup.
        tenant = self.auth.tenant_for(req.env.get(KEY_ENV))
        # Always validate untrusted input, on the full (percent-decoded) string.
        if not is_valid_namespace(namespace):
            raise BadRequest(INVALID_NAMESPACE)
        length = req.content_length
        if length:
            if length > self.max_body:
                raise falcon.HTTPContentTooLarge()
            req.bounded_stream.read()  # drain so keep-alive stays in sync; body unused
        return tenant


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
    """``/readyz``: 200 when Redis and PostgreSQL answer, 503 naming what does not."""

    def __init__(self, store: CounterStore) -> None:
        self.store = store

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {"redis": self.store.ping(), "postgres": self.store.db.ping()}
        resp.content_type = falcon.MEDIA_JSON
        resp.status = 200 if all(checks.values()) else 503
        resp.data = orjson.dumps(
            {"status": "ok" if resp.status == 200 else "unavailable", "checks": checks}
        )


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = render()
