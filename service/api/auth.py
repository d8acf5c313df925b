"""API key → ``Grant`` (tenant, scope, limit), from the worker's memory.

PERF: no request ever asks PostgreSQL about a key. A key of the wrong shape is
refused before it is even hashed; a well-formed one is hashed (SHA-256) and looked
up in the worker's ``KeySet``, kept current by LISTEN/NOTIFY (revocation takes
effect within about a second). So a flood of made-up keys costs a dict lookup
each, and while PostgreSQL is down every key loaded before keeps working. Past a
budget of failures per second, ``Tarpit`` holds each 401 for about two seconds, so a
flood also costs the workers' CPU little.
"""

from __future__ import annotations

from typing import NoReturn

from service.api.errors import Forbidden, Unauthorized
from service.api.keyset import KeySet
from service.api.tarpit import Tarpit
from service.apikeys import SCOPES, Grant, hash_key, is_well_formed
from service.errors import BackendUnavailable

MISSING = "Missing API key: send it in the requiems-api-key header"
MALFORMED = "Malformed API key: expected ck_ followed by 43 characters"
INVALID = "Invalid or revoked API key"
NOT_LOADED = "API keys not loaded yet, retry later"


class Authenticator:
    def __init__(self, keys: KeySet, tarpit: Tarpit | None = None) -> None:
        self.keys = keys
        self.tarpit = tarpit

    def authenticate(self, key: str | None) -> Grant:
        """The key's grant; raises Unauthorized (401), or BackendUnavailable (503)
        before this worker has loaded the keys once."""
        if not key:
            self._refuse(MISSING)
        if not is_well_formed(key):
            self._refuse(MALFORMED)
        keys = self.keys.keys
        if keys is None:
            raise BackendUnavailable("postgres", NOT_LOADED)
        grant = keys.get(hash_key(key))
        if grant is None:
            self._refuse(INVALID)
        return grant

    def _refuse(self, message: str) -> NoReturn:
        if self.tarpit is not None:
            self.tarpit.failed()
        raise Unauthorized(message)

    @property
    def loaded(self) -> bool:
        return self.keys.keys is not None


def require_scope(grant: Grant, needed: str) -> None:
    """Raise Forbidden (403) unless ``grant``'s scope allows ``needed``.

    Scopes are ordered (read < increment < admin), so an operation names the least
    scope it needs: GET ``read``, POST ``increment``, set/reset/delete ``admin``.
    """
    if SCOPES[grant.scope] < SCOPES[needed]:
        raise Forbidden(f"This API key's scope ({grant.scope}) does not allow this: needs {needed}")
