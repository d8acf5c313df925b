"""The processes the systemd units start, with their environment file's example."""

from __future__ import annotations

import shlex
from pathlib import Path

from .workload import Workload


def unit_fields(text: str) -> dict[str, str]:
    """``Key=value`` lines of a unit file (the last one wins, as for these keys in systemd)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            fields[key.strip()] = value.strip()
    return fields


def env_file(text: str) -> dict[str, str]:
    """A systemd EnvironmentFile: ``KEY=value`` lines, comments skipped, quotes removed."""
    env = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip().strip("\"'")
    return env


def workloads(unit_dir: Path, example_env: Path) -> list[Workload]:
    """One Workload per ``*.service`` unit, with ``example_env`` as its EnvironmentFile."""
    env = env_file(example_env.read_text())
    found = []
    for unit in sorted(unit_dir.glob("*.service")):
        fields = unit_fields(unit.read_text())
        timeout = fields.get("TimeoutStopSec", "90").removesuffix("s")
        found.append(
            Workload(
                origin=f"{unit.parent.name}/{unit.name}",
                command=shlex.split(fields.get("ExecStart", "")),
                env={k: v for k, v in env.items() if k.startswith("COUNTER_")},
                stop_grace=float(timeout),
            )
        )
    return found
