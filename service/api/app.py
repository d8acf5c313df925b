"""The composition root: ``create_app`` wires resources to a store passed in or built.

Everything a worker needs is passed in from here, including meinheld's loop hooks
(``service.wsgi`` finds them): no module keeps process-wide state of its own.
"""

from __future__ import annotations

import falcon

from service.api import errors
from service.api.auth import Authenticator
from service.api.batch import BATCH_BODY_BYTES, Batches
from service.api.batch_resource import BatchResource
from service.api.cors import CorsMiddleware
from service.api.metrics import INCREMENTS, BatchedCounter
from service.api.pg import Database
from service.api.redis_access import open_access
from service.api.resources import (
    CounterResource,
    HealthResource,
    MetricsResource,
    OpenApiResource,
    ReadyResource,
)
from service.api.store import CounterStore
from service.fastpath.coop import LoopHooks
from service.logs import setup_logging
from service.settings import Settings

COUNTER_PREFIXES = ("/v1/misc/counter", "/v1/technology/counter")


def create_app(
    settings: Settings, *, store: CounterStore | None = None, hooks: LoopHooks | None = None
) -> falcon.App[falcon.Request, falcon.Response]:
    """Build the WSGI app. Opens no sockets: clients connect on first use, after fork.

    ``hooks``: the meinheld worker's loop, where Redis and PostgreSQL waits yield;
    None (any other worker) blocks the thread instead.
    """
    setup_logging(settings.log_level)
    if store is None:
        store = CounterStore(
            lambda: open_access(settings, hooks),
            Database(
                settings.pg_dsn,
                max_size=settings.pg_pool_max,
                connect_timeout=settings.pg_connect_timeout,
                statement_timeout=settings.pg_statement_timeout,
                hooks=hooks,
            ),
            settings.buckets,
        )
    auth = Authenticator(store.db, settings.auth_cache_ttl, settings.auth_outage_grace)
    middleware = [CorsMiddleware(settings.cors_origins)] if settings.cors_origins else []
    app = falcon.App(middleware=middleware)
    increments = BatchedCounter(INCREMENTS, hooks)
    counters = CounterResource(store, auth, settings.max_body_bytes, increments)
    for prefix in COUNTER_PREFIXES:
        # {namespace:path} also captures '/', so "a/b" or "a%2Fb" reach validation
        # and get a 400 instead of falling through to a 404.
        app.add_route(prefix + "/{namespace:path}", counters)
        app.add_route(prefix + "/", counters)  # empty namespace: 400, not 404
    batches = BatchResource(
        Batches(store), auth, max(settings.max_body_bytes, BATCH_BODY_BYTES), increments
    )
    for prefix in COUNTER_PREFIXES:
        app.add_route(prefix + "s", batches)  # /v1/misc/counters, /v1/technology/counters
    app.add_route("/healthz", HealthResource(store))
    app.add_route("/readyz", ReadyResource(store))
    app.add_route("/metrics", MetricsResource())
    app.add_route("/openapi.json", OpenApiResource())
    errors.install(app)
    return app
