"""The local dev stack behind `make up`, `make down`, `make run` and `make status`.

`up` starts a 3-master Redis Cluster (with `replicas` replicas per master when
asked: `make up REPLICAS=1`), PostgreSQL, the web service and (when installed)
the flusher as detached processes, and records each pid in .run/pids so a later
`down` stops exactly those processes and nothing else.

COUNTER_REDIS_NODES lists every node, replicas too: the service and the flusher
use it only to discover the cluster (any node, a replica included, answers
CLUSTER SLOTS), and after failovers the nodes that started as masters may be the
dead ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs
from .ports import LOCALHOST, free_port
from .postgres_server import PostgresServer, pg_bindir
from .redis_cluster import RedisCluster

REPO = Path(__file__).resolve().parent.parent
RUN = REPO / ".run"
PIDS = RUN / "pids"
ENV_FILE = RUN / "env"
LOGS = RUN / "logs"
BIN = Path(sys.executable).parent  # the venv's bin dir; not resolved, symlinks matter
READY_TIMEOUT = 60.0
STOP_TIMEOUT = {"gunicorn": 30.0, "flusher": 30.0, "redis": 10.0}
INSTALL_HINT = "apt-get install redis-server postgresql"


class StackError(RuntimeError):
    """`up` failed; the message says why."""


def pg_home() -> Path:
    """Per-checkout dir for PostgreSQL data, outside the repo (postgres must reach it)."""
    digest = hashlib.sha1(str(REPO).encode()).hexdigest()[:8]
    return Path("/tmp") / f"counter-stack-{digest}"


# -- .run/pids bookkeeping -----------------------------------------------------


def _load() -> dict[str, Any] | None:
    try:
        data = json.loads(PIDS.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _save(state: dict[str, Any]) -> None:
    RUN.mkdir(exist_ok=True)
    tmp = PIDS.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(PIDS)


def _record(state: dict[str, Any], name: str, kind: str, pid: int, **extra: Any) -> None:
    entry = {"name": name, "kind": kind, "pid": pid, "start_time": procs.start_time(pid), **extra}
    state["processes"].append(entry)
    _save(state)  # saved at once: a failed `up` can still be cleaned up by `down`


def _entry_alive(entry: dict[str, Any]) -> bool:
    return procs.alive(int(entry["pid"]), entry.get("start_time"))


# -- prerequisites -----------------------------------------------------------------


def _missing() -> list[str]:
    missing = [b for b in ("redis-server", "redis-cli") if shutil.which(b) is None]
    if pg_bindir() is None:
        missing.append("postgresql server binaries (initdb, pg_ctl, postgres)")
    return missing


def ensure_prerequisites() -> None:
    """Install what is missing (as root with apt-get), else print the hint and exit 2."""
    missing = _missing()
    if not missing:
        return
    script = REPO / "deploy" / "ensure-system-packages.sh"
    if os.geteuid() == 0 and shutil.which("apt-get") and script.is_file():
        print(
            f"devstack: missing {', '.join(missing)}; running {script.relative_to(REPO)}",
            flush=True,
        )
        subprocess.run(["bash", str(script)], check=False)
        missing = _missing()
        if not missing:
            return
    print(f"devstack: missing {', '.join(missing)}", file=sys.stderr)
    print(f"devstack: install them with: {INSTALL_HINT}", file=sys.stderr)
    sys.exit(2)


# -- up --------------------------------------------------------------------------


def _print_env(env: dict[str, str]) -> None:
    for key, value in env.items():
        print(f"{key}={shlex.quote(value)}")
    print()
    print("try:")
    print(
        f'  curl -s -X POST -H "requiems-api-key: {env["COUNTER_API_KEY"]}" '
        f"{env['COUNTER_URL']}/v1/misc/counter/page-views"
    )
    print(f"  (or: set -a; . {ENV_FILE.relative_to(REPO)}; set +a)")


def _start_postgres(state: dict[str, Any]) -> PostgresServer:
    home = pg_home()
    home.mkdir(mode=0o755, exist_ok=True)
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
    data = home / "pg"
    if data.exists() and not (data / "PG_VERSION").is_file():
        shutil.rmtree(data)  # a half-made data dir from an interrupted initdb
    server = PostgresServer(base_dir=home, data_dir=data, port=free_port())
    try:
        server.start()
    finally:  # recorded even if start() failed after the postmaster came up
        pid = server.pid
        if pid is not None and procs.alive(pid):
            _record(state, "postgres", "postgres", pid, data_dir=str(data), port=server.port)
    if pid is None:
        raise StackError("PostgreSQL started but wrote no postmaster.pid")
    _link_log(server.log_file, "postgres.log")
    return server


def _link_log(target: Path, name: str) -> None:
    link = LOGS / name
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def _counterctl(args: list[str], env: dict[str, str], log_name: str) -> str:
    exe = BIN / "counterctl"
    if not exe.exists():
        raise StackError(f"{exe} not found: install the project into this venv (pip install -e .)")
    out = subprocess.run(
        [str(exe), *args], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    (LOGS / log_name).write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise StackError(
            f"counterctl {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}"
        )
    return out.stdout


def _spawn(
    state: dict[str, Any], name: str, cmd: list[str], env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with open(LOGS / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    _record(state, name, name, proc.pid)
    return proc


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"gunicorn exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise StackError(f"{url}/readyz did not answer 200 within {READY_TIMEOUT:.0f}s")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def running_state() -> tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]:
    """(state, alive entries, dead entries) from .run/pids."""
    state = _load()
    entries = list(state.get("processes", [])) if state else []
    alive = [e for e in entries if _entry_alive(e)]
    return state, alive, [e for e in entries if e not in alive]


@dataclass(frozen=True)
class Options:
    """What `up`/`run` start: replicas per master and the cluster's node timeout."""

    replicas: int = 0
    node_timeout_ms: int = 5000


def up(options: Options | None = None) -> int:
    """Start the stack (or report the one already running). Returns an exit code."""
    options = options or Options()
    state, alive, dead = running_state()
    if alive:
        if dead or not state or not state.get("env"):
            print("devstack: a stack is partly running; `make down` first:", file=sys.stderr)
            _print_status(alive, dead)
            return 1
        print("devstack: stack already running (`make down` to stop it)")
        _print_env(state["env"])
        return 0
    if state is not None:
        PIDS.unlink(missing_ok=True)  # stale: nothing recorded is alive

    ensure_prerequisites()
    RUN.mkdir(exist_ok=True)
    LOGS.mkdir(exist_ok=True)
    state = {
        "repo": str(REPO),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "processes": [],
        "env": {},
    }
    _save(state)
    try:
        return _up(state, options)
    except BaseException as exc:
        if isinstance(exc, StackError | RuntimeError | OSError | subprocess.SubprocessError):
            print(f"devstack: up failed: {exc}", file=sys.stderr)
        elif isinstance(exc, Exception):
            traceback.print_exc()
        print("devstack: stopping what was started", file=sys.stderr)
        down(quiet=True)
        if isinstance(exc, Exception):
            return 1
        raise


def _up(state: dict[str, Any], options: Options) -> int:
    redis_dir = RUN / "redis"
    shutil.rmtree(redis_dir, ignore_errors=True)  # nothing of ours runs there (checked above)
    shape = f"3 masters, {options.replicas} replica(s) each" if options.replicas else "3 masters"
    print(
        f"devstack: starting Redis Cluster ({shape}, node timeout {options.node_timeout_ms} ms)...",
        flush=True,
    )
    cluster = RedisCluster(
        redis_dir, masters=3, node_timeout_ms=options.node_timeout_ms, replicas=options.replicas
    )
    try:
        nodes = cluster.start()
    finally:  # recorded even when start() failed half way (it stops its own nodes then)
        for (_, port), pid in zip(cluster.nodes, cluster.pids, strict=False):
            if procs.alive(pid):
                _record(state, f"redis-{port}", "redis", pid, port=port)
    for (_, port), log in zip(cluster.nodes, cluster.log_files, strict=True):
        _link_log(log, f"redis-{port}.log")
    if options.replicas:
        topo = cluster.topology()
        port_of = {n.node_id: n.port for n in topo}
        for n in topo:
            of = f" of {port_of.get(n.master_id or '', '?')}" if n.role == "replica" else ""
            print(f"devstack:   redis {LOCALHOST}:{n.port} {n.role}{of}", flush=True)

    print("devstack: starting PostgreSQL...", flush=True)
    pg = _start_postgres(state)

    port = free_port()
    env = dict(os.environ)
    env.pop("COUNTER_REDIS_URL", None)  # the service refuses both NODES and URL
    env.update(
        COUNTER_REDIS_NODES=nodes,
        COUNTER_PG_DSN=pg.dsn,
        COUNTER_BIND=f"{LOCALHOST}:{port}",
        PYTHONUNBUFFERED="1",
    )
    print("devstack: migrating, creating a dev API key...", flush=True)
    _counterctl(["migrate"], env, "migrate.log")
    # The development key may do everything, set and delete included (scope admin).
    create = ["keys", "create", "--tenant", "dev", "--scope", "admin"]
    lines = _counterctl(create, env, "keys.log").strip().splitlines()
    if not lines:
        raise StackError("counterctl keys create printed nothing")
    key = lines[-1].strip()
    (LOGS / "keys.log").chmod(0o600)

    print("devstack: starting the web service...", flush=True)
    gunicorn = BIN / "gunicorn"
    web = _spawn(
        state,
        "gunicorn",
        [str(gunicorn), "-c", "python:service.gunicorn_conf", "service.wsgi:app"],
        env,
    )
    flusher = BIN / "counter-flusher"
    if flusher.exists():
        _spawn(state, "flusher", [str(flusher)], env)
    url = f"http://{LOCALHOST}:{port}"
    try:
        _wait_ready(url, web)
    except StackError as exc:
        raise StackError(
            f"{exc}\n--- tail of {LOGS / 'gunicorn.log'} ---\n{_tail(LOGS / 'gunicorn.log')}"
        ) from exc

    state["env"] = {
        "COUNTER_URL": url,
        "COUNTER_API_KEY": key,
        "COUNTER_PG_DSN": pg.dsn,
        "COUNTER_REDIS_NODES": nodes,
    }
    _save(state)
    PIDS.chmod(0o600)
    ENV_FILE.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in state["env"].items()))
    ENV_FILE.chmod(0o600)
    print(
        f"devstack: up; logs in {LOGS.relative_to(REPO)}/, settings in {ENV_FILE.relative_to(REPO)}"
    )
    _print_env(state["env"])
    return 0


# -- down / status / run -------------------------------------------------------------


def _stop_postgres(entry: dict[str, Any]) -> None:
    data = Path(entry["data_dir"])
    server = PostgresServer(data_dir=data, port=entry.get("port"))
    pid, started = int(entry["pid"]), entry.get("start_time")
    if server.pid != pid:  # the data dir now belongs to another postmaster: not ours
        return
    try:
        server.stop("fast")
    except RuntimeError as exc:
        print(f"devstack: pg_ctl stop -m fast failed ({exc}); trying immediate", file=sys.stderr)
        try:
            server.stop("immediate")
        except RuntimeError:
            procs.terminate(pid, started, timeout=10.0)
    procs.wait_gone(pid, 30.0, started)


# Web and flusher first (they drain into Redis/PostgreSQL), then Redis, PostgreSQL last.
_ORDER = {"gunicorn": 0, "flusher": 1, "redis": 2, "postgres": 3}


def down(quiet: bool = False) -> int:
    """Stop every process recorded in .run/pids (only those), then remove it. Idempotent."""
    state = _load()
    if state is None:
        if not quiet:
            print("devstack: nothing recorded in .run/pids; nothing to stop")
        PIDS.unlink(missing_ok=True)
        return 0
    entries = sorted(state.get("processes", []), key=lambda e: _ORDER.get(e.get("kind", ""), 9))
    for entry in entries:
        if not _entry_alive(entry):
            continue
        if not quiet:
            print(f"devstack: stopping {entry['name']} (pid {entry['pid']})", flush=True)
        if entry["kind"] == "postgres":
            _stop_postgres(entry)
        else:
            procs.terminate(
                int(entry["pid"]),
                entry.get("start_time"),
                timeout=STOP_TIMEOUT.get(entry["kind"], 10.0),
                group=entry["kind"] in ("gunicorn", "flusher"),
            )
    left = [e for e in entries if _entry_alive(e)]
    if left:
        print(
            "devstack: still running: " + ", ".join(f"{e['name']} ({e['pid']})" for e in left),
            file=sys.stderr,
        )
        return 1
    PIDS.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    if not quiet:
        print("devstack: down")
    return 0


def _print_status(alive: list[dict[str, Any]], dead: list[dict[str, Any]]) -> None:
    for e in alive:
        print(f"  running  {e['name']:<16} pid {e['pid']}")
    for e in dead:
        print(f"  gone     {e['name']:<16} pid {e['pid']}")


def status() -> int:
    """Print what .run/pids records and whether each process still runs."""
    state, alive, dead = running_state()
    if not state or not (alive or dead):
        print("devstack: no stack recorded (make up / make run to start one)")
        return 0
    started = state.get("started", "?")
    print(f"devstack: stack started {started}: {len(alive)} running, {len(dead)} gone")
    _print_status(alive, dead)
    if alive and state.get("env"):
        print()
        _print_env(state["env"])
    return 0 if alive and not dead else 1


class _Stop(BaseException):
    """SIGTERM/SIGINT in `run`: unwinds like KeyboardInterrupt, then `down` runs."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def run(options: Options | None = None) -> int:
    """`up`, stay in the foreground until Ctrl-C/SIGTERM (or a process dies), then `down`."""
    state, alive, _ = running_state()
    if alive:
        print(
            "devstack: a stack is already running (started by `make up`?); `make down` first",
            file=sys.stderr,
        )
        return 1
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    code = 0
    try:
        code = up(options)
        if code != 0:
            return code
        print("devstack: running; Ctrl-C to stop", flush=True)
        while True:
            time.sleep(1.0)
            _, _, dead = running_state()
            if dead:
                names = ", ".join(e["name"] for e in dead)
                print(
                    f"devstack: {names} exited; see {LOGS.relative_to(REPO)}/; stopping",
                    file=sys.stderr,
                )
                code = 1
                break
    except (_Stop, KeyboardInterrupt):
        print("\ndevstack: stopping...", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let down() finish
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        code = down() or code
    return code
