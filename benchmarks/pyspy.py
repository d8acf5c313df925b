"""Where a service worker's time goes under load: py-spy samples, summarised by function.

Optional (``--pyspy``): sampling adds a little overhead to the profiled worker,
so it runs in a wrk window of its own whose throughput is not reported. Two
samplers run at once on the same worker: ``wall`` (every sample with a Python
stack: time spent *waiting* in a blocking call, e.g. for Redis's reply, counts
against the calling function) and ``gil`` (only samples holding the GIL: where
the CPU goes). Samples with no Python frame (meinheld's C loop: HTTP parsing,
socket writes, epoll) are counted apart. The raw collapsed stacks are kept
beside the plots (speedscope.app or flamegraph.pl read them).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

LINE = re.compile(r":\d+\)$")
TOP = 12


def _func(frame: str) -> str:
    """'on_post (service/resources.py:31)' -> 'on_post (service/resources.py)'."""
    return LINE.sub(")", frame.strip())


def summarize(raw: str) -> dict[str, Any]:
    """Self and inclusive shares per function (of samples with a Python stack)."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = outside = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if not stack.strip():
            outside += int(count)
            continue
        n = int(count)
        frames = [_func(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n

    def share(c: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "pct": round(100 * n / total, 1)} for f, n in c.most_common(TOP)]

    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "no_python_frame": outside,
        "self": share(own),
        "inclusive": share(incl),
    }


def start(pid: int, seconds: int, out: Path, gil: bool) -> subprocess.Popen[bytes] | str:
    """Start sampling ``pid`` in the background; a reason string when py-spy is missing."""
    exe = shutil.which("py-spy") or str(Path(__file__).resolve().parent.parent / ".venv/bin/py-spy")
    if not Path(exe).exists():
        return "py-spy not installed (pip install py-spy)"
    cmd = [
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        *(["--gil"] if gil else []),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[bytes] | str, out: Path, timeout: float) -> dict[str, Any]:
    if isinstance(proc, str):
        return {"skipped": proc}
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    if proc.returncode != 0 or not out.exists():
        return {"skipped": f"py-spy failed: {err.decode(errors='replace')[-300:]}"}
    return {"raw": out.name, **summarize(out.read_text())}
