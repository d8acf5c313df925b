"""A deliberately non-atomic counter API, for proving that the load test catches it.

Same paths, header, envelope and errors as the real service, but an increment
reads the value, sleeps, then writes it back plus one: with several server threads,
concurrent increments are lost and the same value is returned twice. Test-only.

Served by a real server: ``gunicorn -k gthread --threads 8 tests.loadtest.broken_app:app``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
ROUTE_RE = re.compile(r"/v1/(?:misc|technology)/counter/(.*)")
RACE_WINDOW = 0.002  # seconds between the read and the write: where increments get lost

_values: dict[tuple[str, str], int] = {}
_guard = threading.Lock()  # keeps the dict itself sane; deliberately not held across read+write

Start = Callable[[str, list[tuple[str, str]]], Any]
STATUS = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
          404: "404 Not Found", 405: "405 Method Not Allowed"}  # fmt: skip
CODES = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reply(start: Start, status: int, body: dict[str, Any], extra=()) -> Iterable[bytes]:  # type: ignore[no-untyped-def]
    data = json.dumps(body).encode()
    start(STATUS[status], [("Content-Type", "application/json"),
                           ("Content-Length", str(len(data))), *extra])  # fmt: skip
    return [data]


def _error(start: Start, status: int, message: str, extra=()) -> Iterable[bytes]:  # type: ignore[no-untyped-def]
    body = {"error": CODES[status], "message": message, "metadata": {"timestamp": _now()}}
    return _reply(start, status, body, extra)


def increment(tenant: str, namespace: str) -> int:
    """The bug under test: read, pause, write. Two threads can both read n and write n+1."""
    with _guard:
        value = _values.get((tenant, namespace), 0)
    time.sleep(RACE_WINDOW)
    with _guard:
        _values[(tenant, namespace)] = value + 1
    return value + 1


def app(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
    if path == "/healthz":
        return _reply(start, 200, {"status": "ok"})
    route = ROUTE_RE.fullmatch(path)
    if route is None:
        return _error(start, 404, f"No route for {method} {path}")
    if method not in ("GET", "POST"):
        return _error(start, 405, "Method not allowed on this resource", [("Allow", "GET, POST")])
    tenant = environ.get("HTTP_REQUIEMS_API_KEY", "")  # any key works; the key is the tenant
    if not tenant:
        return _error(start, 401, "Missing API key")
    namespace = route.group(1)
    if not NAME_RE.fullmatch(namespace):
        return _error(start, 400, "Invalid namespace")
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    if method == "POST":
        value = increment(tenant, namespace)
    else:
        with _guard:
            value = _values.get((tenant, namespace), 0)
    data = {"namespace": namespace, "value": value}
    return _reply(start, 200, {"data": data, "metadata": {"timestamp": _now()}})
