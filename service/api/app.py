"""The composition root: ``create_app`` wires resources to a store passed in or built.

Everything a worker needs is passed in from here, including meinheld's loop hooks
(``service.wsgi`` finds them): no module keeps process-wide state of its own.
"""

from __future__ import annotations

import falcon

from service.api import errors
from service.api.auth import Authenticator
from service.api.keyset import KeySet
from service.api.metrics import INCREMENTS, BatchedCounter
from service.api.pg import Database
from service.api.ratelimit import RateLimiter
from service.api.redis_access import open_access
from service.api.resources import (
    CounterResource,
    HealthResource,
    MetricsResource,
    ReadyResource,
)
from service.api.store import CounterStore
from service.fastpath.coop import LoopHooks
from service.logs import setup_logging
from service.settings import Settings

COUNTER_PREFIXES = ("/v1/misc/counter", "/v1/technology/counter")


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
    if keys is None:
        keys = KeySet(
            settings.pg_dsn,
            resync=settings.keys_resync,
            connect_timeout=settings.pg_connect_timeout,
        ).start()
        keys.wait_loaded(settings.pg_connect_timeout)  # before the loop runs: blocks nothing
    auth = Authenticator(keys)
    app = falcon.App()
    increments = BatchedCounter(INCREMENTS, hooks)
    counter_store = store
    limiter = RateLimiter(lambda: counter_store.redis)
    counters = CounterResource(store, auth, settings.max_body_bytes, increments, limiter)
    for prefix in COUNTER_PREFIXES:
        # {namespace:path} also captures '/', so "a/b" or "a%2Fb" reach validation
        # and get a 400 instead of falling through to a 404.
        app.add_route(prefix + "/{namespace:path}", counters)
        app.add_route(prefix + "/", counters)  # empty namespace: 400, not 404
    app.add_route("/healthz", HealthResource(store))
    app.add_route("/readyz", ReadyResource(store, auth))
    app.add_route("/metrics", MetricsResource())
    errors.install(app)
    return app
