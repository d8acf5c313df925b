"""What a Dockerfile's default target runs: its command, environment and ports."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field


@dataclass
class Image:
    """The settings a stage hands to the containers run from it (inherited by FROM)."""

    env: dict[str, str] = field(default_factory=dict)
    expose: set[int] = field(default_factory=set)
    cmd: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)  # RUN commands, this stage and its bases


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        word, _, rest = (pending + stripped).partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def final_image(text: str) -> Image:
    """The image `docker build` produces by default: the last stage, with what it inherits."""
    stages: dict[str, Image] = {}
    current = Image()
    for word, rest in instructions(text):
        if word == "FROM":
            parts = rest.split()
            base = stages.get(parts[0].lower())
            current = (
                Image(dict(base.env), set(base.expose), list(base.cmd), list(base.runs))
                if base
                else Image()
            )
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages[parts[2].lower()] = current
        elif word == "ENV":
            current.env.update(_env_pairs(rest))
        elif word == "EXPOSE":
            current.expose.update(int(p.split("/")[0]) for p in rest.split())
        elif word == "CMD":
            current.cmd = _exec_form(rest)
        elif word == "RUN":
            current.runs.append(rest)
    return current


def all_runs(text: str) -> list[str]:
    """Every RUN command of every stage, in file order."""
    return [rest for word, rest in instructions(text) if word == "RUN"]


def _env_pairs(rest: str) -> dict[str, str]:
    tokens = shlex.split(rest)
    if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value with spaces`
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.split("=", 1) for token in tokens)


def _exec_form(rest: str) -> list[str]:
    if rest.startswith("["):
        return [str(arg) for arg in json.loads(rest)]
    return ["/bin/sh", "-c", rest]


def runs_script_after_install(runs: list[str], script: str) -> bool:
    """Whether ``script`` is run, and the project was pip-installed before or with it."""
    install = re.compile(r"""pip3? install\b[^&;|]*\s['"]?\.(\[[^\]]*\])?['"]?(\s|$)""")
    installed = False
    for run in runs:
        where = install.search(run)
        if script in run:
            return installed or (where is not None and where.start() < run.index(script))
        installed = installed or where is not None
    return False
