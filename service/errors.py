"""Domain errors: what failed, in the counter's terms, not HTTP's.

The store, the PostgreSQL adapter and the auth cache raise these; only the API's
edge (``service.api.errors``) renders them, as 503 ``unavailable``. Their message
is public (it reaches the response body): never an address, a DSN or a key.
"""

from __future__ import annotations


class BackendUnavailable(Exception):
    """Redis or PostgreSQL failed, refused or did not answer in time; the caller may retry."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(message)
        self.backend = backend  # "redis" or "postgres"
        self.message = message


class OutcomeUnknown(BackendUnavailable):
    """An increment failed after it may have been sent: it may or may not have been
    applied. It is never re-sent, so it is never applied twice."""
