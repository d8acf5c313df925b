"""``service.flusher.priority``: the group's niceness follows the flusher's only where it
leads its own session, and a /proc it may not write never stops it from starting.

Each case runs in a child process (its niceness would otherwise stay raised here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from service.flusher.priority import autogroup_enabled

CHILD = """
import os, sys
from pathlib import Path
from service.flusher import priority
if sys.argv[1] == "own":
    os.setsid()
if sys.argv[2] != "-":
    priority.AUTOGROUP = Path(sys.argv[2])
print(priority.yield_cpu(3))
print(os.getpriority(os.PRIO_PROCESS, 0))
"""


def run(session: str, autogroup: str = "-") -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, session, autogroup],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.splitlines()
    return out[0], int(out[1])


pytestmark = pytest.mark.skipif(not autogroup_enabled(), reason="no autogroup in this kernel")


def test_in_a_shared_session_only_the_process_yields() -> None:
    done, nice = run("shared")
    assert done == "shared session: group left alone"
    assert nice == min(19, os.nice(0) + 3)


def test_leading_its_session_the_group_yields_too() -> None:
    done, nice = run("own")
    assert done == f"group at nice {nice}"


def test_a_proc_it_cannot_write_leaves_the_group_and_still_starts(tmp_path: Path) -> None:
    done, nice = run("own", str(tmp_path / "missing" / "autogroup"))
    assert done.startswith("group left alone: ")
    assert nice == min(19, os.nice(0) + 3)
