"""``/v1/{misc,technology}/counters``: POST many increments, GET many values.

The whole request is a 400 when malformed or over ``MAX_ITEMS``; otherwise a 200
with one result per item, in order, each a value or an error of its own.
"""

from __future__ import annotations

from typing import Any

import falcon
import orjson

from service.api import idempotency
from service.api.amounts import parse_body
from service.api.auth import Authenticator, require_scope
from service.api.batch import MAX_ITEMS, TOO_MANY, Batches, Result, parse_increments, unknown
from service.api.clock import utc_timestamp
from service.api.errors import BadRequest
from service.api.metrics import BatchedCounter
from service.api.ratelimit import RateLimiter
from service.api.resources import KEY_ENV, read_body


class BatchResource:
    def __init__(
        self,
        batches: Batches,
        auth: Authenticator,
        max_body: int,
        increments: BatchedCounter,
        limiter: RateLimiter,
    ) -> None:
        self.batches = batches
        self.auth = auth
        self.max_body = max_body
        self.increments = increments
        self.limiter = limiter

    def _admit(self, req: falcon.Request, resp: falcon.Response, scope: str) -> str:
        """Authenticate, check scope, rate-limit (one request, one unit of the limit)."""
        grant = self.auth.authenticate(req.env.get(KEY_ENV))
        require_scope(grant, scope)
        if grant.rate is not None:
            resp.set_headers(self.limiter.check(grant))
        return grant.tenant

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant = self._admit(req, resp, "increment")
        body = parse_body(read_body(req, self.max_body))
        slots, items = parse_increments(body)
        header = req.env.get(idempotency.HEADER_ENV)
        idem = None
        if header is not None:  # PERF: the request's fingerprint only when it needs one
            increments = orjson.dumps(body.get("increments"), option=orjson.OPT_SORT_KEYS)
            idem = idempotency.from_header(header, "batch", increments)
        if items:
            self.batches.increment(tenant, items, idem)
        results: list[Any] = slots
        applied = 0
        for item in items:
            result = results[item.index] = item.result or unknown(item.namespace)
            applied += "value" in result
        if applied:
            self.increments.inc(applied)
        _results(resp, results)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        tenant = self._admit(req, resp, "read")
        read_body(req, self.max_body)
        namespaces = req.get_param_as_list("namespace") or []
        if len(namespaces) > MAX_ITEMS:
            raise BadRequest(TOO_MANY)
        _results(resp, self.batches.get(tenant, namespaces))


def _results(resp: falcon.Response, results: list[Result]) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.data = orjson.dumps(
        {"data": {"results": results}, "metadata": {"timestamp": utc_timestamp()}}
    )
