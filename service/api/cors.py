"""CORS for browsers: ``COUNTER_CORS_ORIGINS`` (empty = off).

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
answered here, before any resource, so it needs no API key (browsers never send one
with it). Every other response to an allowed origin, errors included (they are
rendered before ``process_response`` runs), carries ``Access-Control-Allow-Origin``,
so a browser client can read a 401, 422 or 503 too.
"""

from __future__ import annotations

from typing import Any

import falcon

METHODS = "GET, POST, PUT, DELETE, OPTIONS"
HEADERS = "requiems-api-key, content-type, idempotency-key"
MAX_AGE = "600"


class CorsMiddleware:
    def __init__(self, origins: tuple[str, ...]) -> None:
        self.any = "*" in origins
        self.origins = frozenset(origins)

    def _allowed(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if self.any:
            return "*"
        return origin if origin in self.origins else None

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method != "OPTIONS" or req.get_header("Access-Control-Request-Method") is None:
            return
        allowed = self._allowed(req.get_header("Origin"))
        resp.status = 204
        if allowed is not None:
            resp.set_header("Access-Control-Allow-Methods", METHODS)
            resp.set_header("Access-Control-Allow-Headers", HEADERS)
            resp.set_header("Access-Control-Max-Age", MAX_AGE)
        resp.complete = True  # answered: no resource, no key

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool
    ) -> None:
        allowed = self._allowed(req.get_header("Origin"))
        if allowed is not None:
            resp.set_header("Access-Control-Allow-Origin", allowed)
            resp.set_header("Access-Control-Expose-Headers", "content-type")
        if not self.any:
            resp.append_header("Vary", "Origin")
