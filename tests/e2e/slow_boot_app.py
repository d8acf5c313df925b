"""A WSGI app whose import takes seconds inside ``__set_name__`` (for the boot-stop test).

Python wraps an exception raised in ``__set_name__``, SystemExit included, in a
RuntimeError: a stop signal that raises SystemExit there looks like a failed boot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

BOOT_SECONDS = 5.0


class _Slow:
    def __set_name__(self, owner: type, name: str) -> None:
        time.sleep(BOOT_SECONDS)


class _Owner:
    attribute = _Slow()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [b"{}"]
