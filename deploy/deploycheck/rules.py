"""The checks themselves: pure functions of a Workload and what the code says.

Each returns a list of problems (empty = fine), phrased for the person who edits the
deployment file. What needs the installed project (parsing settings, importing modules,
running ``counterctl``) is passed in, so these stay testable on their own.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .workload import Workload

API, FLUSHER, TOOL = "gunicorn", "counter-flusher", "counterctl"


def known_variables(settings_source: str) -> set[str]:
    """Every ``COUNTER_*`` name the settings module spells out as a string literal."""
    return set(re.findall(r"""["'](COUNTER_[A-Z0-9_]+)["']""", settings_source))


def documented_api_command(source: str) -> list[str]:
    """The ``gunicorn …`` command a module's docstring gives between double backquotes."""
    match = re.search(r"``(gunicorn [^`]+)``", source)
    return match.group(1).split() if match else []


def variable_problems(w: Workload, known: set[str]) -> list[str]:
    unknown = sorted((set(w.env) | w.unresolved) - known)
    return [f"{w.origin}: {name} is not a variable service/settings.py reads" for name in unknown]


def settings_problems(w: Workload, parse: Callable[[dict[str, str]], Any]) -> list[str]:
    """What ``Settings.from_env`` says about the workload's environment."""
    if w.unresolved:  # values come from elsewhere (valueFrom): only their names are checked
        return []
    try:
        parse(w.env)
    except ValueError as exc:
        return [f"{w.origin}: the service would refuse to start: {exc}"]
    return []


def command_problems(
    w: Workload,
    scripts: set[str],
    api_command: list[str],
    module_exists: Callable[[str], bool],
    cli_accepts: Callable[[list[str]], bool],
) -> list[str]:
    """The program is installed by the project; its arguments are what the code expects."""
    if w.program not in scripts:
        return [
            f"{w.origin}: runs {w.program!r}, which the project does not install "
            f"(installed: {', '.join(sorted(scripts))})"
        ]
    args = w.command[1:]
    if w.program == API:
        problems = []
        if args != api_command[1:]:
            problems.append(
                f"{w.origin}: API command {' '.join(w.command)!r} differs from "
                f"the documented {' '.join(api_command)!r}"
            )
        for module in _gunicorn_modules(args):
            if not module_exists(module):
                problems.append(f"{w.origin}: module {module} does not exist")
        return problems
    if w.program == FLUSHER and args:
        return [f"{w.origin}: counter-flusher takes no arguments (got {args})"]
    if w.program == TOOL and not cli_accepts(args):
        return [f"{w.origin}: counterctl rejects the arguments {args}"]
    return []


def _gunicorn_modules(args: list[str]) -> list[str]:
    modules = []
    for i, arg in enumerate(args):
        if arg.startswith("python:") and i > 0 and args[i - 1] in ("-c", "--config"):
            modules.append(arg.removeprefix("python:"))
        elif ":" in arg and not arg.startswith("-") and (i == 0 or not args[i - 1].startswith("-")):
            modules.append(arg.split(":")[0])
    return modules


def listen_port(settings: Any, program: str) -> int | None:
    """The port the program listens on, per its settings (None: it listens on none)."""
    if program == API:
        return int(str(settings.bind).rpartition(":")[2])
    if program == FLUSHER and settings.flusher_metrics_port:
        return int(settings.flusher_metrics_port)
    return None


def port_problems(w: Workload, settings: Any) -> list[str]:
    """Declared ports include the one the process listens on; probes and scrapes use it."""
    port = listen_port(settings, w.program)
    if port is None:
        return [
            f"{w.origin}: probes port {p}, but {w.program} listens on none"
            for p in sorted(w.probe_ports)
        ]
    problems = []
    if w.ports and port not in w.ports:
        problems.append(
            f"{w.origin}: {w.program} listens on {port}, "
            f"which is not among the declared ports {sorted(w.ports)}"
        )
    if w.ports and str(settings.bind).rpartition(":")[0].strip("[]") in ("127.0.0.1", "::1"):
        problems.append(
            f"{w.origin}: COUNTER_BIND={settings.bind} is reachable only from inside the container"
        )
    problems += [
        f"{w.origin}: probes or scrapes port {p}, but {w.program} listens on {port}"
        for p in sorted(w.probe_ports - {port})
    ]
    return problems


def grace_problems(w: Workload, graceful_timeout: float) -> list[str]:
    """The API gets longer than gunicorn's graceful_timeout between SIGTERM and SIGKILL."""
    if w.program != API or w.stop_grace is None:
        return []
    left = w.stop_grace - w.pre_stop
    if left > graceful_timeout:
        return []
    return [
        f"{w.origin}: {w.stop_grace:g} s to stop, {w.pre_stop:g} s of it in preStop, "
        f"leaves {left:g} s: not more than gunicorn's graceful_timeout "
        f"({graceful_timeout:g} s), so requests in flight would be killed"
    ]
