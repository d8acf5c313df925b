"""A deliberately broken counter API, for proving that the load test catches each bug.

Same paths, header, envelope and errors as the real service; ``create_app(mode)``
picks the bug. Store bugs (``race``, ``lost``, ``stale``, ``sharded``) are in
``broken_stores``; body bugs keep a correct store and spoil every ``FAULT_EVERY``-th
counter response:

  envelope  a 200 whose envelope is wrong (flat, value as a string, wrong namespace)
  nometa    a 200 without ``metadata``
  html5xx   a 502 with an HTML body (the increment applied, as behind a proxy that
            timed out); the other half of the faults are well-formed JSON 503s, which
            the checker must *not* flag

The checker's own start and final reads (User-Agent ``counterload-check``) get true
values and well-formed bodies: each mode breaks the load, not the measuring stick, so
that exactly the one invariant under test fires and the counts below match exactly.

``GET /stats`` says what the app did wrong (``bad_bodies``, ``lost``, ``stale_reads``,
``shards``), so a test can compare it with what the checker found. Served by a real
server: ``gunicorn -k gthread --threads 8 "tests.loadtest.broken_app:create_app('lost')"``.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from loadtest.counterload.api import USER_AGENT
from tests.loadtest.broken_stores import STORES, AtomicStore

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROUTE_RE = re.compile(r"/v1/(?:misc|technology)/counter/(.*)")
FAULT_EVERY = 25
BODY_MODES = ("envelope", "nometa", "html5xx")

Start = Callable[[str, list[tuple[str, str]]], Any]
App = Callable[[dict[str, Any], Start], Iterable[bytes]]
STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
          404: "404 Not Found", 405: "405 Method Not Allowed", 502: "502 Bad Gateway",
          503: "503 Service Unavailable"}  # fmt: skip
CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
         503: "unavailable"}  # fmt: skip
HTML_502 = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _send(start: Start, status: int, data: bytes, kind: str = "application/json",
          extra: Iterable[tuple[str, str]] = ()) -> Iterable[bytes]:  # fmt: skip
    start(STATUS[status], [("Content-Type", kind), ("Content-Length", str(len(data))), *extra])
    return [data]


def _reply(start: Start, status: int, body: dict[str, Any], extra=()) -> Iterable[bytes]:  # type: ignore[no-untyped-def]
    return _send(start, status, json.dumps(body).encode(), extra=extra)


def _error(start: Start, status: int, message: str, extra=()) -> Iterable[bytes]:  # type: ignore[no-untyped-def]
    body = {"error": CODES[status], "message": message, "metadata": {"timestamp": _now()}}
    return _reply(start, status, body, extra)


def _success(namespace: str, value: int, fault: int) -> dict[str, Any]:
    """The envelope, or (``fault`` 1-3) a wrong one of three kinds."""
    body: dict[str, Any] = {"data": {"namespace": namespace, "value": value},
                            "metadata": {"timestamp": _now()}}  # fmt: skip
    if fault == 1:
        return {"namespace": namespace, "value": value, "metadata": body["metadata"]}
    if fault == 2:
        body["data"]["value"] = str(value)
    if fault == 3:
        body["data"]["namespace"] = namespace.upper() + "x"
    return body


def create_app(mode: str = "race") -> App:
    store: AtomicStore = STORES.get(mode, AtomicStore)()
    if mode not in STORES and mode not in BODY_MODES:
        raise ValueError(f"unknown mode {mode!r}")
    served = itertools.count(1)  # counter responses; thread-safe enough under the GIL

    def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path == "/healthz":
            return _reply(start, 200, {"status": "ok"})
        if path == "/stats":
            with store.lock:
                return _reply(start, 200, dict(store.stats))
        route = ROUTE_RE.fullmatch(path)
        if route is None:
            return _error(start, 404, f"No route for {method} {path}")
        if method not in ("GET", "POST"):
            return _error(start, 405, "Method not allowed", [("Allow", "GET, POST")])
        tenant = environ.get("HTTP_REQUIEMS_API_KEY", "")  # any key works; the key is the tenant
        if not tenant:
            return _error(start, 401, "Missing API key")
        namespace = route.group(1)
        if not NAME_RE.fullmatch(namespace):
            return _error(start, 400, "Invalid namespace")
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length:
            environ["wsgi.input"].read(length)
        checker = environ.get("HTTP_USER_AGENT", "") == USER_AGENT
        n = 1 if checker else next(served)
        faulty = mode in BODY_MODES and n % FAULT_EVERY == 0
        if faulty and mode == "html5xx" and n % (2 * FAULT_EVERY) == 0:
            return _error(start, 503, "Backend unavailable")  # well-formed: not a violation
        key = (tenant, namespace)
        conn = f"{environ.get('REMOTE_ADDR')}:{environ.get('REMOTE_PORT')}"
        if method == "POST":
            value = store.increment(key, conn)
        else:
            value = store.current(key) if checker else store.get(key)
        if not faulty:
            return _reply(start, 200, _success(namespace, value, 0))
        with store.lock:
            store.stats["bad_bodies"] += 1
        if mode == "html5xx":
            return _send(start, 502, HTML_502, "text/html")
        body = _success(namespace, value, 1 + n // FAULT_EVERY % 3 if mode == "envelope" else 0)
        if mode == "nometa":
            del body["metadata"]
        return _reply(start, 200, body)

    return app


app = create_app()  # the original, non-atomic one
