"""Build the Go peer baseline (``baselines/go_peer/main.go``) offline, or say why not.

GOPATH mode against Debian's packages (``golang-go``, ``golang-github-gomodule-redigo-dev``,
which puts redigo under ``/usr/share/gocode``): no module download, no ``-mod=mod``.
The binary and Go's build cache live in ``benchmarks/.work/go/`` (git-ignored).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "baselines" / "go_peer"
SYSTEM_GOPATH = Path("/usr/share/gocode")
REDIGO = SYSTEM_GOPATH / "src/github.com/gomodule/redigo/redis"
INSTALL = "apt-get install golang-go golang-github-gomodule-redigo-dev"


class GoUnavailable(RuntimeError):
    """Go or redigo is missing, or the build failed: the Go peer is skipped."""


def build(build_dir: Path = HERE / ".work" / "go") -> Path:
    """Compile the peer into ``build_dir/go-peer``; raise GoUnavailable with a one-line reason."""
    go = shutil.which("go")
    if go is None:
        raise GoUnavailable(f"go not found ({INSTALL})")
    if not REDIGO.is_dir():
        raise GoUnavailable(f"redigo not found in {SYSTEM_GOPATH} ({INSTALL})")
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "go-peer"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GO")},
        "GO111MODULE": "off",
        "GOPATH": f"{SYSTEM_GOPATH}:{build_dir / 'gopath'}",
        "GOCACHE": str(build_dir / "cache"),
        "GOFLAGS": "",
    }
    out = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        last = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        raise GoUnavailable(f"go build failed: {last[0]}")
    return binary
