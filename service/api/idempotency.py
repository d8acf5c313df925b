"""Idempotency keys: a retried POST, PUT or DELETE is applied once.

The client sends ``Idempotency-Key: <1–255 visible ASCII chars>``. The record of
its outcome lives in Redis for ``TTL_MS`` in the slot of what it protects (the
counter's bucket; for a batch, one record per item in that item's bucket, named by
the item's index), and the script that changes the counter checks and writes it in
the same atomic call. So a retry after a 503 whose outcome was unknown either finds
the record (the first attempt was applied: its value is returned) or finds none
(it was not: it is applied now). The key is scoped per tenant; the record holds a
fingerprint of the request, and the same key with another request is a 422.
A key reused for a counter in another bucket is not seen (the records of a key are
only in the buckets it protected): such reuse counts as a new key.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from service.api.errors import BadRequest

HEADER_ENV = "HTTP_IDEMPOTENCY_KEY"  # WSGI name of the Idempotency-Key header
TTL_MS = 24 * 3600 * 1000
_VALID = re.compile(r"[\x21-\x7e]{1,255}")
INVALID_KEY = "Invalid Idempotency-Key: 1–255 visible ASCII characters"


@dataclass(frozen=True)
class Idempotency:
    """A request's key (as a digest) and its fingerprint."""

    digest: str
    fingerprint: str


def from_header(raw: str | None, *request: object) -> Idempotency | None:
    """None without the header; 400 for an invalid one. ``request``: what makes two
    requests the same (method, operation, namespace, amounts...)."""
    if raw is None:
        return None
    if _VALID.fullmatch(raw) is None:
        raise BadRequest(INVALID_KEY)
    digest = hashlib.sha256(raw.encode()).hexdigest()[:32]
    fingerprint = hashlib.sha256(repr(request).encode()).hexdigest()[:32]
    return Idempotency(digest, fingerprint)


def is_conflict(message: str) -> bool:
    """Whether a refused script call was an idempotency conflict (nothing done)."""
    return "IDEMCONFLICT" in message
