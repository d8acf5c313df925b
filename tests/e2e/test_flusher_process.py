"""``counter-flusher`` as a real process: SIGTERM/SIGINT drain, SIGKILL loses nothing, metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devstack import free_port
from service.flusher.priority import AUTOGROUP, autogroup_enabled, group_nice
from service.settings import Settings
from tests.builders import NewTenant
from tests.flush_helpers import (
    dirty_names,
    flush,
    increment,
    pg_states,
)

FLUSHER = Path(sys.executable).parent / "counter-flusher"


def flusher_env(s: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTER_")}
    env.update({"COUNTER_PG_DSN": s.pg_dsn, "COUNTER_FLUSHER_METRICS_PORT": "0", **extra})
    if s.cluster:
        env["COUNTER_REDIS_NODES"] = ",".join(f"{h}:{p}" for h, p in s.redis_nodes)
    else:
        env["COUNTER_REDIS_URL"] = str(s.redis_url)
    return env


def start(env: dict[str, str], log: Path, own_session: bool = False) -> subprocess.Popen[bytes]:
    if not FLUSHER.exists():
        pytest.fail(f"{FLUSHER} is missing: run `pip install -e .` to create the console script")
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [str(FLUSHER)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {text!r} in the flusher's log:\n{log.read_text()}")
        time.sleep(0.05)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_drains_every_increment_and_exits_0(
    backend: Settings,
    r: Any,
    pg_dsn: str,
    new_tenant: NewTenant,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    tenant, _ = new_tenant()
    port, log = free_port(), tmp_path / "flusher.log"
    # An hour between passes: only the drain on the signal can flush what comes next.
    env = flusher_env(
        backend,
        COUNTER_FLUSH_INTERVAL="3600",
        COUNTER_FLUSHER_METRICS_PORT=str(port),
        COUNTER_FLUSHER_NICE="7",
    )
    proc = start(env, log)
    try:
        wait_for_line(log, "flusher started", proc, 30)
        # It yields the CPU to request handling: niceness raised by COUNTER_FLUSHER_NICE.
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, os.nice(0) + 7)
        if autogroup_enabled():  # it shares this session: the group's niceness is not its own
            assert Path(f"/proc/{proc.pid}/autogroup").read_text() == AUTOGROUP.read_text()
        deadline = time.monotonic() + 30
        while "counter_flush_pass_seconds_count 1.0" not in (exposition := scrape(port)):
            assert time.monotonic() < deadline, exposition  # the first pass is over
            time.sleep(0.05)
        assert "counter_flush_lag_seconds" in exposition
        assert "counter_flush_rows_written_total" in exposition
        names = [f"e{i}" for i in range(500)]
        increment(r, backend.buckets, tenant, {ns: 1 + i % 4 for i, ns in enumerate(names)})
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert pg_states(pg_dsn, tenant) == {ns: (0, 1 + i % 4) for i, ns in enumerate(names)}
    events = {e["event"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert "stop requested, draining: one final pass" in events
    stopped = events["flusher stopped"]
    assert stopped["drained"] is True and stopped["rows_written"] >= 500  # by the final pass


def test_sigkill_at_any_moment_loses_nothing_a_later_flush_does_not_write(
    backend: Settings, r: Any, pg_dsn: str, new_tenant: NewTenant, tmp_path: Path
) -> None:
    tenant, _ = new_tenant()
    names = [f"k{i}" for i in range(20_000)]
    increment(r, backend.buckets, tenant, dict.fromkeys(names, 1))
    log = tmp_path / "flusher.log"
    proc = start(
        flusher_env(backend, COUNTER_FLUSH_INTERVAL="0.05", COUNTER_FLUSH_BATCH="500"), log
    )
    try:
        wait_for_line(log, "flusher started", proc, 30)
        deadline = time.monotonic() + 30
        while not pg_states(pg_dsn, tenant) and time.monotonic() < deadline:
            time.sleep(0.01)  # kill it once its first batches are in: mid-flush
    finally:
        proc.kill()
        proc.wait(30)
    at_kill = pg_states(pg_dsn, tenant)
    assert 0 < len(at_kill) < len(names), len(at_kill)  # killed mid-flush
    assert set(at_kill.values()) == {(0, 1)}  # what it wrote, it wrote once
    increment(r, backend.buckets, tenant, dict.fromkeys(names[::10], 1))
    flush(backend)
    expected = {ns: (0, 1 + (i % 10 == 0)) for i, ns in enumerate(names)}
    assert pg_states(pg_dsn, tenant) == expected
    assert dirty_names(r, backend.buckets, tenant, names) == set()


def test_a_flusher_with_another_bucket_count_refuses_to_start(
    backend: Settings, tmp_path: Path
) -> None:
    log = tmp_path / "flusher.log"
    proc = start(flusher_env(backend, COUNTER_BUCKETS="1024"), log)
    assert proc.wait(timeout=30) == 2
    assert "refusing to start" in log.read_text()


@pytest.mark.skipif(not autogroup_enabled(), reason="the kernel does not group sessions")
def test_a_flusher_leading_its_own_session_lowers_its_sessions_group_too(
    backend: Settings, tmp_path: Path
) -> None:
    """Under autogroup a session is one scheduling group and nice only ranks inside it:
    a flusher alone in its session must lower the group, or it competes with the
    workers' session at equal weight (as under devstack before this was found)."""
    log = tmp_path / "flusher.log"
    env = flusher_env(backend, COUNTER_FLUSH_INTERVAL="3600", COUNTER_FLUSHER_NICE="7")
    proc = start(env, log, own_session=True)
    try:
        wait_for_line(log, "flusher started", proc, 30)
        expected = min(19, os.nice(0) + 7)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == expected
        assert group_nice(Path(f"/proc/{proc.pid}/autogroup")) == expected
        started = [e for e in map(json.loads, log.read_text().splitlines()) if "autogroup" in e]
        assert started[0]["autogroup"] == f"group at nice {expected}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
