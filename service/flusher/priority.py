"""The flusher's CPU priority: a niceness that also holds against other sessions.

Why more than ``os.nice``: on kernels with autogroup scheduling (on by default in
Debian's and Ubuntu's), every session is one scheduling group, and a nice value
only ranks a process inside its own group. A flusher that leads a session of its
own (devstack, the benchmark, any supervisor that calls ``setsid``) therefore
competed with the whole gunicorn session at equal weight, whatever
``COUNTER_FLUSHER_NICE`` said. So when it leads its session, its group is given the
same niceness. In a session it shares, the group is left alone: raising it would
slow its neighbours too. Under a cgroup of its own (systemd, a container) autogroup
does not apply and the kernel's cgroup weights decide instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

AUTOGROUP = Path("/proc/self/autogroup")
AUTOGROUP_ENABLED = Path("/proc/sys/kernel/sched_autogroup_enabled")


def yield_cpu(increment: int) -> str:
    """Raise this process's niceness by ``increment`` and, where it leads its own
    session under autogroup, its group's to match; what was done, for the log."""
    nice = os.nice(increment)
    if increment == 0:
        return "unchanged"
    if not autogroup_enabled():
        return "no autogroup"
    if os.getsid(0) != os.getpid():
        return "shared session: group left alone"
    try:
        if (now := group_nice()) >= nice:
            return f"group already at nice {now}"
        try:
            AUTOGROUP.write_text(str(nice))
        except BlockingIOError:  # EAGAIN: the kernel allows one change per 100 ms
            time.sleep(0.1)
            AUTOGROUP.write_text(str(nice))
        return f"group at nice {group_nice()}"
    except OSError as exc:  # a read-only /proc (some containers): only nice applies
        return f"group left alone: {exc.strerror or exc}"


def autogroup_enabled() -> bool:
    """Whether the kernel schedules sessions as groups (false off Linux, or built without)."""
    try:
        return AUTOGROUP_ENABLED.read_text().strip() == "1"
    except OSError:
        return False


def group_nice(path: Path = AUTOGROUP) -> int:
    """The autogroup's niceness, from ``/autogroup-<id> nice <n>``."""
    return int(path.read_text().split()[-1])
