"""The ``by`` of an increment, from the query string or a JSON body, validated once.

A POST may say ``?by=N``, ``{"by": N}``, both (they must agree) or neither (1). Anything
else is a 400 raised before Redis is touched, so a bad request changes nothing.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from service.api.errors import BadRequest

MAX_BY = 1_000_000_000
BAD_BY = f"Invalid by: must be an integer from 1 to {MAX_BY:,}"
BAD_JSON = "Invalid body: must be a JSON object"
DISAGREE = "Invalid by: the query string and the body disagree"
_DIGITS = re.compile(r"[0-9]{1,10}")


def check_by(value: Any) -> int:
    """A JSON value as a ``by``: an integer (not a bool, not 2.0) in range."""
    if type(value) is not int or not 1 <= value <= MAX_BY:
        raise BadRequest(BAD_BY)
    return value


def parse_body(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object; no body (zero bytes) is ``{}``. Whitespace alone
    is not JSON: a 400, like any other body that is not an object."""
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest(BAD_JSON) from None
    if not isinstance(body, dict):
        raise BadRequest(BAD_JSON)
    return body


def amount(query: str | None, body: dict[str, Any]) -> int:
    """The ``by`` of one increment: query ``by`` and/or body ``by``, default 1."""
    by: int | None = None
    if query is not None:
        if _DIGITS.fullmatch(query) is None:
            raise BadRequest(BAD_BY)
        by = check_by(int(query))
    if "by" in body:
        from_body = check_by(body["by"])
        if by is not None and by != from_body:
            raise BadRequest(DISAGREE)
        by = from_body
    return 1 if by is None else by
