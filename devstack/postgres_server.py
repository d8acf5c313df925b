"""A throwaway PostgreSQL server (initdb + pg_ctl) on a free local port.

initdb and postgres refuse to run as root, so as root every server-side command
runs as the `postgres` system user, in a directory that user owns and can reach
(a temp dir under /tmp by default, since the repo may sit under a root-only dir).
fsync stays on for the server: the durability tests need real commits.
`host` and `wrap` put the server elsewhere than 127.0.0.1, e.g. inside a network
namespace (`devstack.netns`): the postmaster then listens on the namespace's
address and is started under `ip netns exec` (as root, then `setpriv` to postgres).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from .ports import LOCALHOST, free_port, wait_for_port

DATABASE = "counter"
READY_TIMEOUT = 60


def pg_bindir() -> Path | None:
    """Where initdb/pg_ctl/postgres are: pg_config, newest /usr/lib/postgresql/*/bin, or PATH."""

    def usable(d: Path) -> bool:
        return all((d / b).is_file() for b in ("initdb", "pg_ctl", "postgres"))

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10
            )
            if out.returncode == 0 and usable(Path(out.stdout.strip())):
                return Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass

    def version(d: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/([\d.]+)/bin$", d)
        return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if usable(Path(d)):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb and usable(Path(initdb).resolve().parent):
        return Path(initdb).resolve().parent
    return None


def _clean_env() -> dict[str, str]:
    # Stray PG* variables (PGDATA, PGPORT, PGHOST...) must not redirect our commands.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


class PostgresServer:
    """A PostgreSQL cluster in its own data dir, serving database `counter` on 127.0.0.1.

    PostgresServer() makes a temp dir and initdb's it; PostgresServer(data_dir=..., port=...)
    pointed at an already initialized data dir just starts it. Log and socket live in
    base_dir (default: the temp dir, or data_dir's parent when data_dir is given).
    """

    def __init__(
        self,
        base_dir: Path | None = None,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        host: str = LOCALHOST,
        wrap: tuple[str, ...] = (),
    ) -> None:
        self._owns_base = False
        if base_dir is None and data_dir is not None:
            base_dir = Path(data_dir).parent
        if base_dir is None:
            # /tmp rather than $TMPDIR when root: the postgres user must be able to reach it.
            tmp_root = "/tmp" if os.geteuid() == 0 and os.path.isdir("/tmp") else None
            base_dir = Path(tempfile.mkdtemp(prefix="devstack-pg-", dir=tmp_root))
            self._owns_base = True
        self.base_dir = Path(base_dir).absolute()
        self.data_dir = (
            Path(data_dir).absolute() if data_dir is not None else self.base_dir / "data"
        )
        self.port = port if port is not None else free_port()
        self.host = host
        self.wrap = wrap
        self.log_file = self.base_dir / "postgres.log"
        self._bindir: Path | None = None
        self._run_as: pwd.struct_passwd | None = None

    # -- helpers -------------------------------------------------------------

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = pg_bindir()
            if self._bindir is None:
                raise FileNotFoundError(
                    "PostgreSQL server binaries not found (apt-get install postgresql)"
                )
        return self._bindir

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{DATABASE}"

    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    @property
    def pid(self) -> int | None:
        """Postmaster pid from postmaster.pid, or None when not running."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _user(self) -> pwd.struct_passwd | None:
        """The account server commands run as: None = ourselves; `postgres` when root."""
        if os.geteuid() != 0:
            return None
        if self._run_as is None:
            try:
                self._run_as = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise RuntimeError(
                    "running as root needs a 'postgres' system user (apt-get install postgresql)"
                ) from exc
        return self._run_as

    def _run(
        self, *args: str, timeout: float = 120, check: bool = True, wrapped: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a bindir tool as the server's user, in base_dir, in its own session
        (inside `wrap` when `wrapped`: entering a namespace needs root, so the switch
        to the postgres user is then done by setpriv inside it)."""
        user = self._user()
        kwargs: dict[str, Any] = {}
        env = _clean_env()
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if user is not None:
            env.update(HOME=str(self.base_dir), USER=user.pw_name, LOGNAME=user.pw_name)
            if wrapped and self.wrap:
                ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
                cmd = ["setpriv", *ids, *cmd]
            else:
                kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        if wrapped:
            cmd = [*self.wrap, *cmd]
        out = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            cwd=self.base_dir, env=env, start_new_session=True, **kwargs,
        )  # fmt: skip
        if check and out.returncode != 0:
            output = f"{out.stdout}{out.stderr}{self._log_tail()}"
            raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{output}")
        return out

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n--- postgres log ---\n" + "\n".join(
                self.log_file.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    def _prepare_dirs(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if user is None:
            return
        for d in (self.base_dir, self.data_dir):
            if d.exists():
                os.chown(d, user.pw_uid, user.pw_gid)
        probe = subprocess.run(
            ["test", "-w", str(self.base_dir), "-a", "-x", str(self.base_dir)],
            user=user.pw_uid, group=user.pw_gid, extra_groups=[], cwd="/",
        )  # fmt: skip
        if probe.returncode != 0:
            raise RuntimeError(
                f"user postgres cannot reach {self.base_dir} (a parent dir is closed to it); "
                "use a base_dir under /tmp"
            )

    def _initdb(self) -> None:
        # --no-sync only speeds up initdb itself; the server keeps fsync on.
        self._run(
            "initdb", "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
            "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip

    # -- lifecycle -------------------------------------------------------------

    def running(self) -> bool:
        if not self.data_dir.is_dir():
            return False
        return self._run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def start(self) -> str:
        """initdb if needed, start the server, create database `counter`; return the DSN."""
        self._prepare_dirs()
        if not self.initialized:
            self._initdb()
        if self.host != LOCALHOST:
            self._allow_samenet()
        self.start_again()
        self._ensure_database()
        return self.dsn

    def _allow_samenet(self) -> None:
        """A server on a veth address is reached from its /30 (devstack.netns), not from
        127.0.0.1: trust clients on the subnets the server itself is on."""
        hba = self.data_dir / "pg_hba.conf"
        line = "host all all samenet trust\n"
        text = hba.read_text()
        if line not in text:
            hba.write_text(text + line)

    def start_again(self) -> None:
        """Start the (already initialized) server on the same data dir and port."""
        opts = (
            f"-p {self.port} -k {shlex.quote(str(self.base_dir))} -c listen_addresses={self.host} "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-o", opts, "-l", str(self.log_file),
            "-w", "-t", str(READY_TIMEOUT), "start", timeout=READY_TIMEOUT + 30, wrapped=True,
        )  # fmt: skip
        wait_for_port(self.port, host=self.host, timeout=30.0)

    def _ensure_database(self) -> None:
        psql = [
            "psql", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-v", "ON_ERROR_STOP=1", "-tAc",
        ]  # fmt: skip
        found = self._run(*psql, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'")
        if found.stdout.strip() != "1":
            self._run(*psql, f'CREATE DATABASE "{DATABASE}"')

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m mode ('smart', 'fast' or 'immediate'). Idempotent."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"bad stop mode {mode!r}")
        if not self.running():
            return
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", str(READY_TIMEOUT), "stop",
            timeout=READY_TIMEOUT + 30,
        )  # fmt: skip

    def restart(self, mode: str = "immediate") -> None:
        """Stop with `mode` (immediate = crash, WAL recovery on start) and start again."""
        self.stop(mode)
        self.start_again()

    def cleanup(self) -> None:
        """Stop (fast) and remove the temp dir if this object created it."""
        self.stop("fast")
        if self._owns_base:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        if not self.running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
