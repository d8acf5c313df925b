"""The composition root: ``create_app`` wires resources to a store passed in or built.

Everything a worker needs is passed in from here, including meinheld's loop hooks
(``service.wsgi`` finds them): no module keeps process-wide state of its own.
"""

from __future__ import annotations

from typing import Any

import falcon
import falcon.routing

from service.api import errors
from service.api.auth import Authenticator
from service.api.batch import Batches
from service.api.batch_resource import BatchResource
from service.api.cors import CorsMiddleware
from service.api.keyset import KeySet
from service.api.metrics import (
    BACKEND_DURATION,
    IN_FLIGHT,
    INCREMENTS,
    REQUEST_DURATION,
    BatchedCounter,
    BatchedHistogram,
    InFlight,
)
from service.api.ratelimit import RateLimiter
from service.api.redis_access import open_access
from service.api.request_metrics import RequestMetrics, TimedDatabase, timed_redis
from service.api.resources import (
    CounterResource,
    HealthResource,
    MetricsResource,
    OpenApiResource,
    ReadyResource,
)
from service.api.store import CounterStore
from service.api.tarpit import Tarpit
from service.fastpath.coop import LoopHooks
from service.logs import setup_logging
from service.settings import Settings

COUNTER_PREFIXES = ("/v1/misc/counter", "/v1/technology/counter")


class _MethodMap(dict[str, Any]):
    """A route's responders; a method Falcon has never heard of gets the route's 405.

    Falcon answers a method outside its own list (``falcon.COMBINED_METHODS``, e.g.
    ``FOO``) with 400; meinheld's build passes such methods on, and the contract
    wants 405 with the resource's ``Allow``, like ``PUT``. That responder is the one
    Falcon built for the route, under ``WEBSOCKET`` (which no resource serves).
    PERF: a plain dict lookup for every known method; only a miss costs more.
    """

    def __missing__(self, method: str) -> Any:
        responder = dict.get(self, "WEBSOCKET")
        if responder is None:
            raise KeyError(method)
        return responder


class CounterRouter(falcon.routing.CompiledRouter):
    """Falcon's router, with ``_MethodMap`` for each route's responders."""

    def map_http_methods(self, resource: object, **kwargs: Any) -> Any:
        return _MethodMap(super().map_http_methods(resource, **kwargs))


def _head_as_get(resource: Any) -> Any:
    """``HEAD`` is ``GET`` without the body (Falcon drops the body, keeps the length)."""
    if hasattr(resource, "on_get") and not hasattr(resource, "on_head"):
        resource.on_head = resource.on_get
    return resource


def create_app(
    settings: Settings,
    *,
    store: CounterStore | None = None,
    hooks: LoopHooks | None = None,
    keys: KeySet | None = None,
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the WSGI app. Clients connect on first use; the one exception is the API
    keys' thread (``keys``), which a worker starts here, after fork (nothing is preloaded).

    ``hooks``: the meinheld worker's loop, where Redis and PostgreSQL waits yield;
    None (any other worker) blocks the thread instead. ``keys``: a ``KeySet`` already
    running (tests share one); by default one is started, and the worker waits for its
    first load up to ``COUNTER_PG_CONNECT_TIMEOUT`` before its loop runs, so it serves
    keys from its first request (with PostgreSQL down it starts anyway and answers 503
    for keys until the load succeeds).
    """
    setup_logging(settings.log_level)
    if store is None:
        backend_calls = BatchedHistogram(BACKEND_DURATION, hooks)
        store = CounterStore(
            lambda: timed_redis(open_access(settings, hooks), backend_calls),
            TimedDatabase(
                settings.pg_dsn,
                max_size=settings.pg_pool_max,
                connect_timeout=settings.pg_connect_timeout,
                statement_timeout=settings.pg_statement_timeout,
                hooks=hooks,
                durations=backend_calls,
            ),
            settings.buckets,
        )
    if keys is None:
        keys = KeySet(
            settings.pg_dsn,
            resync=settings.keys_resync,
            connect_timeout=settings.pg_connect_timeout,
        ).start()
        keys.wait_loaded(settings.pg_connect_timeout)  # before the loop runs: blocks nothing
    # Half the connections at most are held by a tarpit: the rest stay for valid keys.
    tarpit = Tarpit(
        hooks,
        settings.auth_failures_per_s,
        settings.auth_failure_delay,
        max_held=max(1, settings.worker_connections // 2),
    )
    auth = Authenticator(keys, tarpit)
    red = RequestMetrics(BatchedHistogram(REQUEST_DURATION, hooks), InFlight(IN_FLIGHT, hooks))
    cors = [CorsMiddleware(settings.cors_origins)] if settings.cors_origins else []
    middleware: list[Any] = [red, *cors]  # red first: it times every request, preflights too
    app = falcon.App(router=CounterRouter(), middleware=middleware)
    increments = BatchedCounter(INCREMENTS, hooks)
    counter_store = store
    limiter = RateLimiter(lambda: counter_store.redis)
    counters = _head_as_get(
        CounterResource(store, auth, settings.max_body_bytes, increments, limiter)
    )
    for prefix in COUNTER_PREFIXES:
        # {namespace:path} also captures '/', so "a/b" or "a%2Fb" reach validation
        # and get a 400 instead of falling through to a 404.
        app.add_route(prefix + "/{namespace:path}", counters)
        app.add_route(prefix + "/", counters)  # empty namespace: 400, not 404
    batches = _head_as_get(
        BatchResource(
            Batches(store),
            auth,
            settings.max_body_bytes,
            increments,
            limiter,
        )
    )
    for prefix in COUNTER_PREFIXES:
        app.add_route(prefix + "s", batches)  # /v1/misc/counters, /v1/technology/counters
    app.add_route("/healthz", _head_as_get(HealthResource(store)))
    app.add_route("/readyz", _head_as_get(ReadyResource(store, auth)))
    app.add_route("/metrics", _head_as_get(MetricsResource()))
    app.add_route("/openapi.json", _head_as_get(OpenApiResource()))
    errors.install(app)
    return app
