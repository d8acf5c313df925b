"""What the checks need from the installed project: its scripts, modules, CLI and settings."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent  # the virtualenv's bin, where the console scripts are


def installed_scripts(pyproject: Path) -> set[str]:
    """The project's console scripts and those of its declared dependencies."""
    meta = tomllib.loads(pyproject.read_text())["project"]
    deps = {_normal(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in meta["dependencies"]}
    scripts = set(meta.get("scripts", {}))
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        if ep.dist is not None and _normal(ep.dist.name) in deps:
            scripts.add(ep.name)
    return scripts


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_source(name: str) -> str:
    """The source of a module, or of every file of a package (the layout may change)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(name)
    if spec.submodule_search_locations:
        files = sorted(p for d in spec.submodule_search_locations for p in Path(d).rglob("*.py"))
        return "\n".join(p.read_text() for p in files)
    return Path(spec.origin).read_text()


def module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def cli_accepts(args: list[str]) -> bool:
    """Whether ``counterctl`` parses ``args`` (asked with ``--help``: nothing runs)."""
    done = subprocess.run(
        [str(BIN / "counterctl"), *args, "--help"],
        capture_output=True,
        env={"PATH": os.environ.get("PATH", "")},
        timeout=60,
    )
    return done.returncode == 0


def parse_settings(env: dict[str, str]) -> Any:
    from service.settings import Settings

    return Settings.from_env(env)


def graceful_timeout(config_module: str, env: dict[str, str]) -> float:
    """gunicorn's graceful_timeout as the config module computes it from ``env``.

    Imported in a child process: the module reads the environment at import and may exit."""
    with tempfile.TemporaryDirectory(prefix="deploycheck-") as tmp:
        child_env = {**env, "PATH": os.environ.get("PATH", ""), "PROMETHEUS_MULTIPROC_DIR": tmp}
        code = f"import {config_module} as c; print(c.graceful_timeout)"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=child_env, timeout=60
        )
    if done.returncode != 0:
        raise RuntimeError(f"importing {config_module} failed: {done.stderr.strip()[-300:]}")
    return float(done.stdout.strip())


def defined_metrics(package: Path) -> set[str]:
    """Metric names the package spells out (``"counter_…"`` literals)."""
    names: set[str] = set()
    for path in package.rglob("*.py"):
        names.update(re.findall(r"""["'](counter_[a-z0-9_]+)["']""", path.read_text()))
    return names
