"""Real servers and Locust runs for the load-test suite's own tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack import free_port

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOADTEST = REPO / "loadtest"
# Latency thresholds are off in these tests: a shared CI machine makes them flaky,
# and they are unit-tested. The error-ratio threshold stays at its default.
QUIET_THRESHOLDS = {
    "LOADTEST_MAX_P50_MS": "0",
    "LOADTEST_MAX_P95_MS": "0",
    "LOADTEST_MAX_P99_MS": "0",
}


@dataclass
class Outcome:
    code: int
    output: str
    summary: dict[str, Any]


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s")


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process in its own session, stopped with SIGTERM (then SIGKILL) by its pid."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def broken_server(tmp: Path, mode: str = "race") -> Iterator[str]:
    """``broken_app`` with one bug (``mode``) under gunicorn (gthread: real threads racing)."""
    port = free_port()
    cmd = [
        str(BIN / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "-k", "gthread",
        "--threads", "8", f"tests.loadtest.broken_app:create_app({mode!r})",
    ]  # fmt: skip
    with process(cmd, dict(os.environ), tmp / f"broken-app-{mode}.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http_ok(url + "/healthz", proc)
        yield url


def server_stats(url: str) -> dict[str, int]:
    """What a ``broken_app`` did wrong, by its own count."""
    with urllib.request.urlopen(url + "/stats", timeout=10) as resp:
        data: dict[str, int] = json.loads(resp.read())
    return data


def driver(env: dict[str, str], tmp: Path, timeout: float = 120) -> Outcome:
    """``loadtest/run.py``, the command ``make loadtest`` and CI run, against ``LOADTEST_HOST``.

    Bounded twice: Locust's own ``-t`` (``LOADTEST_DURATION``) and ``timeout`` here.
    """
    env = {**os.environ, **QUIET_THRESHOLDS, "LOADTEST_REPORTS": str(tmp), **env}
    out = subprocess.run(
        [sys.executable, str(LOADTEST / "run.py")], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    scenario = env.get("LOADTEST_SCENARIO", "all").replace(",", "+")
    return Outcome(
        out.returncode, out.stdout + out.stderr, _load(tmp / f"{scenario}-invariants.json")
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError):
        return {}
