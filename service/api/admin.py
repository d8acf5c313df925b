"""Set, reset and delete a counter: ``PUT`` ``{"value": N}`` and ``DELETE`` on a counter.

Both raise the counter's epoch (``set.lua``), so the flusher, hydration and settling
stay exact: a concurrent increment is ordered before or after the set by Redis, and
PostgreSQL never gets the old value back. DELETE is a set to 0: the row stays with
value 0 (a deleted counter reads 0, as one that never existed), which keeps every
guard (``(epoch, value)`` only grows) without a tombstone. Both need a key with
the ``admin`` scope (``service.api.auth.require_scope``): 403 otherwise.
"""

from __future__ import annotations

from service.api.amounts import parse_body
from service.api.errors import BadRequest

MAX_VALUE = 2**53 - 1  # exact in every JSON client (JavaScript numbers)
BAD_VALUE = f"Invalid value: must be an integer from 0 to {MAX_VALUE:,}"


def new_value(raw: bytes) -> int:
    """The ``value`` of a PUT body: an integer in 0..MAX_VALUE, nothing else."""
    body = parse_body(raw)
    value = body.get("value")
    if set(body) != {"value"} or type(value) is not int or not 0 <= value <= MAX_VALUE:
        raise BadRequest(BAD_VALUE)
    return value
