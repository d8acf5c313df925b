"""Plain GETs of counter values, outside the measured load (start and final values).

urllib is enough here (Locust monkey-patches sockets, so it cooperates with gevent),
and keeps these reads out of Locust's statistics.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

PATH = "/v1/misc/counter/"
BATCH_PATH = "/v1/misc/counters"
KEY_HEADER = "requiems-api-key"
USER_AGENT = "counterload-check"  # tells these reads apart from the load in server logs
ATTEMPTS = 4


class ReadError(RuntimeError):
    """A counter could not be read (after retries); the message says why."""


def read_value(host: str, key: str, namespace: str, timeout: float = 10.0) -> int:
    """The counter's current value; retries transient failures (503, connection errors)."""
    url = host.rstrip("/") + PATH + namespace
    request = urllib.request.Request(url, headers={KEY_HEADER: key, "User-Agent": USER_AGENT})
    why = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(0.2 * 2**attempt)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                body = json.loads(resp.read())
            value = body["data"]["value"]
            if body["data"]["namespace"] != namespace or not isinstance(value, int):
                raise ReadError(f"GET {namespace}: malformed body {body!r}")
            return value
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code}"
            if exc.code != 503:
                break  # 401/400/...: retrying will not help
        except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError) as exc:
            why = f"{type(exc).__name__}: {exc}"
    raise ReadError(f"GET {namespace} failed: {why}")


def read_values(
    host: str, keys: tuple[str, ...], cids: list[str], timeout: float
) -> dict[str, int]:
    """Values of counters named ``"<key index>/<namespace>"``."""
    values = {}
    for cid in cids:
        index, _, namespace = cid.partition("/")
        values[cid] = read_value(host, keys[int(index)], namespace, timeout)
    return values
