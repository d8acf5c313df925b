"""The layering of ``service/``: each package imports only what its ``__init__`` allows.

core (``service/*.py``) → core; ``api`` → core, fastpath; ``fastpath`` → core;
``flusher`` → core; ``ops`` → core, flusher. Only the entry points
(``service/wsgi.py``, ``service/gunicorn_conf.py``) may import anything, and nothing
imports them. Only the API and its entry points know HTTP (falcon).
Function-level imports count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[2] / "service"
PACKAGES = ("api", "fastpath", "flusher", "ops")
ENTRY_POINTS = ("wsgi", "gunicorn_conf")
ALLOWED = {
    "core": {"core"},
    "api": {"core", "api", "fastpath"},
    "fastpath": {"core", "fastpath"},
    "flusher": {"core", "flusher"},
    "ops": {"core", "flusher", "ops"},
    "entry": {"core", "api", "fastpath", "flusher", "ops"},
}
HTTP_LAYERS = {"api", "entry"}  # the only ones that may import falcon


def layer(module: str) -> str:
    """Layer of a dotted module name under ``service`` ("service.api.app" -> "api")."""
    parts = module.split(".")
    if len(parts) < 2:
        return "core"
    if parts[1] in PACKAGES:
        return parts[1]
    return "entry" if parts[1] in ENTRY_POINTS else "core"


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every import in ``tree``; ``from service import x`` names service.x."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "service":
                found += [(node.lineno, f"service.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(path: str, source: str) -> list[str]:
    """Every import in ``source`` (the file ``service/<path>``) that its layer forbids."""
    mine = layer("service." + path.removesuffix(".py").replace("/", "."))
    out = []
    for line, module in imported(ast.parse(source)):
        top = module.split(".")[0]
        if top == "service":
            theirs = layer(module)
            if theirs not in ALLOWED[mine] or theirs == "entry":
                out.append(f"service/{path}:{line}: {mine} imports {module} ({theirs})")
        elif top == "falcon" and mine not in HTTP_LAYERS:
            out.append(f"service/{path}:{line}: {mine} imports falcon (HTTP belongs to the API)")
    return out


def test_every_module_of_service_keeps_the_import_rules() -> None:
    found = []
    for file in sorted(SERVICE.rglob("*.py")):
        path = file.relative_to(SERVICE).as_posix()
        found += violations(path, file.read_text("utf-8"))
    assert found == []


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("flusher/redis_side.py", "from service.fastpath.resp import pack"),
        ("flusher/loop.py", "def f():\n    from service.api import metrics"),
        ("fastpath/pipeline.py", "import service.api.store"),
        ("keys.py", "from service.flusher import plan"),
        ("api/store.py", "from service.ops.verify import verify"),
        ("ops/cli.py", "from service import wsgi"),
        ("pg_helpers.py", "import falcon"),
    ],
)
def test_a_forbidden_import_is_reported(path: str, source: str) -> None:
    assert len(violations(path, source)) == 1


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("api/store.py", "from service.fastpath.lean_redis import LeanRedis"),
        ("ops/cli.py", "from service.flusher.loop import serve_forever"),
        ("flusher/loop.py", "from service import keys, settings"),
        ("wsgi.py", "from service.api.app import create_app"),
    ],
)
def test_an_allowed_import_is_not_reported(path: str, source: str) -> None:
    assert violations(path, source) == []
