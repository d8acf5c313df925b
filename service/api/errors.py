"""HTTP errors and the one JSON error shape every failure is rendered in.

``{"error": code, "message": text, "metadata": {"timestamp": ...}}`` — the same
for the API's own errors (401, 403 beyond a key's scope, 429 over its rate limit),
the core's domain errors (``BackendUnavailable`` → 503), Falcon's routing errors
(404/405/413) and anything unexpected (500, logged once, never with a stack trace
or secret in the body).
"""

from __future__ import annotations

import logging
from typing import Any

import falcon
import orjson

from service.api.clock import utc_timestamp
from service.api.metrics import ERRORS
from service.errors import BackendUnavailable

log = logging.getLogger("counter.errors")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "idempotency_conflict",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}
_MESSAGES = {
    404: "No such route",
    405: "Method not allowed on this resource",
    413: "Request body too large",
    500: "Internal server error",
}


_COUNTERS: dict[int, Any] = {}  # status -> ERRORS child


class ApiError(Exception):
    """An error with a status from the contract's error table."""

    status = 500

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    """A valid key used beyond its scope."""

    status = 403


class RateLimited(ApiError):
    """The key is over its rate limit; the headers say when to come back."""

    status = 429


class IdempotencyConflict(ApiError):
    """The Idempotency-Key was used for another request within its lifetime."""

    status = 422


def error_body(status: int, message: str) -> bytes:
    return orjson.dumps(
        {
            "error": CODES.get(status, "internal_error" if status >= 500 else "bad_request"),
            "message": message,
            "metadata": {"timestamp": utc_timestamp()},
        }
    )


def _render(resp: falcon.Response, status: int, message: str, headers: dict[str, str]) -> None:
    # PERF: counted here, where errors are rendered, rather than by a middleware that
    # would run on every successful request too; the labelled child is looked up once
    # per status (a flood of 401s pays only the increment).
    counter = _COUNTERS.get(status)
    if counter is None:
        counter = _COUNTERS[status] = ERRORS.labels(str(status))
    counter.inc()
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.data = error_body(status, message)
    for name, value in headers.items():
        resp.set_header(name, value)


def handle_api_error(req: falcon.Request, resp: falcon.Response, ex: ApiError, _: Any) -> None:
    _render(resp, ex.status, ex.message, ex.headers)


def handle_unavailable(
    req: falcon.Request, resp: falcon.Response, ex: BackendUnavailable, _: Any
) -> None:
    """A backend is down or the outcome of an increment is unknown: the client may retry."""
    _render(resp, 503, ex.message, {})


def handle_http_error(
    req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError, _: Any
) -> None:
    """Falcon's own errors (unknown route, wrong method, ...) in our shape."""
    status = ex.status_code
    message = _MESSAGES.get(status) or ex.description or ex.title or "Request failed"
    headers = dict(ex.headers or {})
    if status == 404:
        message = f"No route for {req.method} {req.path}"
    _render(resp, status, message, headers)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception, _: Any) -> None:
    log.error(
        "unhandled error",
        extra={"method": req.method, "route": req.uri_template, "error": repr(ex)},
        exc_info=ex,
    )
    _render(resp, 500, _MESSAGES[500], {})


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register handlers; Falcon picks the most specific class, so order is irrelevant."""
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(falcon.HTTPError, handle_http_error)
    app.add_error_handler(ApiError, handle_api_error)
    app.add_error_handler(BackendUnavailable, handle_unavailable)
