"""Process helpers: liveness, identity and stop-by-pid with escalation.

Stopping is always by a recorded pid, checked against the process start time
recorded with it, so a recycled pid never gets a signal meant for a server of ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    # Field 2 (comm) may contain spaces and parentheses: split after the last ')'.
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot), or None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def alive(pid: int, started: int | None = None) -> bool:
    """True if `pid` runs (zombies count as dead) and, if given, started at `started`.

    Reaps the pid when it is our own child, so callers can poll children too.
    """
    if pid <= 0:
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or int(fields[19]) == started


def wait_gone(pid: int, timeout: float, started: int | None = None) -> bool:
    """Poll until `pid` is gone; True if it went within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while alive(pid, started):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def terminate(
    pid: int,
    started: int | None = None,
    timeout: float = 10.0,
    group: bool = False,
) -> None:
    """SIGTERM `pid`, wait, then SIGKILL it (and its process group if `group`).

    `group` is for processes we started with start_new_session=True (pgid == pid):
    a SIGKILLed gunicorn master must not leave its workers behind.
    No-op if the pid is gone or is no longer the process we started.
    """
    if not alive(pid, started):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_gone(pid, timeout, started):
        return
    try:
        if group and os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    wait_gone(pid, 5.0, started)


def stop_popen(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a Popen child, wait, SIGKILL after `timeout`; always reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
