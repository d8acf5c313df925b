"""Raw HTTP against the service under test: exact paths, keep-alive clients, a request in flight."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit


def request(url: str, method: str, path: str, key: str | None = None) -> tuple[int, Any, Any]:
    """One raw request: the path is sent exactly as given (no client-side normalising)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    headers = {"requiems-api-key": key} if key else {}
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"null")
    conn.close()
    return resp.status, body, resp.headers


def hammer(url: str, path: str, key: str, threads: int, each: int) -> list[int]:
    """``threads`` keep-alive clients POST ``each`` increments; all values returned."""
    parts = urlsplit(url)

    def client(_: int) -> list[int]:
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
        values = []
        for _ in range(each):
            conn.request("POST", path, headers={"requiems-api-key": key})
            values.append(json.loads(conn.getresponse().read())["data"]["value"])
        conn.close()
        return values

    with ThreadPoolExecutor(threads) as pool:
        return [v for chunk in pool.map(client, range(threads)) for v in chunk]


def post_in_background(url: str, path: str, key: str) -> tuple[threading.Thread, list[Any]]:
    """A POST started in a thread; its result lands in the list once it is answered."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(request(url, "POST", path, key)))
    thread.start()
    time.sleep(0.1)  # the request is now waiting on the busy node
    return thread, result
