"""The benchmark's Go peer builds offline and counts like the service's contract says."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import redis

from benchmarks import go_peer
from devstack import free_port, wait_for_port


def call(method: str, url: str) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_go_peer_increments_on_post_and_reads_on_get(redis_single_url: str, tmp_path: Path) -> None:
    try:
        binary = go_peer.build(tmp_path / "go")
    except go_peer.GoUnavailable as exc:
        pytest.skip(str(exc))
    port = redis.Redis.from_url(redis_single_url).connection_pool.connection_kwargs["port"]
    http_port = free_port()
    cmd = [str(binary), "-addr", f"127.0.0.1:{http_port}", "-redis", f"127.0.0.1:{port}"]
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL) as proc:
        try:
            wait_for_port(http_port, timeout=10)
            base, ns = f"http://127.0.0.1:{http_port}/v1/misc/counter", f"n{uuid.uuid4().hex[:8]}"
            assert call("GET", f"{base}/{ns}") == (200, {"data": {"namespace": ns, "value": 0}})
            assert call("POST", f"{base}/{ns}")[1] == {"data": {"namespace": ns, "value": 1}}
            assert call("POST", f"{base}/{ns}")[1] == {"data": {"namespace": ns, "value": 2}}
            assert call("GET", f"{base}/{ns}")[1] == {"data": {"namespace": ns, "value": 2}}
            assert call("POST", f"{base}/bad.name")[0] == 400
        finally:
            proc.terminate()
            proc.wait(10)
