"""Run the Locust suite headless and bounded; exit with Locust's exit code.

    .venv/bin/python loadtest/run.py          # what `make loadtest` runs

Targets the local stack from `make up` (read from .run/env; started with
`python -m devstack up` when none is up, and stopped again afterwards), creates one
API key per tenant with `counterctl keys create`, runs Locust (one process, or a
master and N workers), and writes HTML/CSV/JSON reports to loadtest/reports/.

Environment (all optional):
  LOADTEST_SCENARIO      all, or a comma list of: hot, many, by-n, batch, mixed, race     [all]
  LOADTEST_USERS         simulated users in total                             [10]
  LOADTEST_SPAWN_RATE    users started per second                             [10]
  LOADTEST_DURATION      run time, Locust syntax (20s, 1m30s)                 [45s]
  LOADTEST_WORKERS       0: one process; N: a Locust master and N workers     [0]
  LOADTEST_TENANTS       tenants (one API key each) created for the run       [3]
  LOADTEST_STOP_TIMEOUT  seconds users get to finish their request at the end [5]
  LOADTEST_HOST          test another deployment instead of the local stack; keys from
                         LOADTEST_API_KEYS, or created with counterctl (needs COUNTER_PG_DSN
                         and COUNTER_REDIS_NODES/URL of that deployment)
  LOADTEST_API_KEYS      comma-separated keys to use instead of creating new ones
  LOADTEST_PG_CHECK      auto | on | off: check PostgreSQL == Redis after a flush; auto = when
                         the local stack runs a flusher (with LOADTEST_HOST: when
                         LOADTEST_PG_DSN is set)                              [auto]
  LOADTEST_VERIFY        1: after the run, also `counterctl verify --tenant` each tenant this
                         script created (whole-counter Redis vs PostgreSQL), when the
                         PostgreSQL check is on; 0: don't                     [1]
  LOADTEST_KEEP_STACK    1: leave a stack this script started running
  LOADTEST_REPORTS       report directory                                     [loadtest/reports]
  Thresholds, read by Locust itself (see counterload/options.py for the rest):
  LOADTEST_MAX_ERROR_RATIO [0.01]  LOADTEST_MAX_P50_MS [100]  LOADTEST_MAX_P95_MS [500]
  LOADTEST_MAX_P99_MS [1000]  (0 disables a latency threshold)

Exit code: 0 when every invariant and threshold held, 1 when one did not, 2 on a
setup error (no stack, no keys).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent  # the venv's bin: locust, counterctl
RUN = REPO / ".run"
SCENARIOS = {
    "hot": "hot_counter.py",
    "many": "many_counters.py",
    "by-n": "by_n.py",
    "batch": "batches.py",
    "mixed": "mixed_read_write.py",
    "race": "reads_racing_writes.py",
}


class SetupError(RuntimeError):
    pass


def seconds(span: str) -> int:
    """Locust's run-time syntax: '45', '45s', '1m30s', '1h'."""
    if span.isdigit():
        return int(span)
    parts = re.fullmatch(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?", span.strip())
    if not parts or not any(parts.groups()):
        raise SetupError(f"LOADTEST_DURATION={span!r} is not like 45s, 1m30s or 1h")
    h, m, s = (int(g or 0) for g in parts.groups())
    return h * 3600 + m * 60 + s


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip() or str(default)
    if not raw.isdigit():
        raise SetupError(f"{name}={raw!r} is not a whole number")
    return int(raw)


def read_env_file() -> dict[str, str]:
    values = {}
    for line in (RUN / "env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = shlex.split(value)[0] if value.strip() else ""
    return values


def stack_ready() -> dict[str, str] | None:
    """The local stack's settings when one is up and answering /readyz."""
    try:
        stack = read_env_file()
        with urllib.request.urlopen(stack["COUNTER_URL"] + "/readyz", timeout=3) as resp:
            return stack if resp.status == 200 else None
    except (OSError, KeyError, IndexError, ValueError):
        return None


def flusher_running() -> bool:
    try:
        processes = json.loads((RUN / "pids").read_text()).get("processes", [])
    except (OSError, ValueError):
        return False
    for entry in processes:
        if entry.get("kind") == "flusher":
            try:
                os.kill(int(entry["pid"]), 0)
                return True
            except (OSError, ValueError, KeyError):
                continue
    return False


def devstack(command: str) -> int:
    print(f"loadtest: python -m devstack {command}", flush=True)
    return subprocess.run([sys.executable, "-m", "devstack", command], cwd=REPO).returncode


def create_keys(tenants: list[str], backend_env: dict[str, str]) -> list[str]:
    keys = []
    for tenant in tenants:
        out = subprocess.run(
            [str(BIN / "counterctl"), "keys", "create", "--tenant", tenant],
            env={**os.environ, **backend_env}, cwd=REPO, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        lines = out.stdout.strip().splitlines()
        if out.returncode != 0 or not lines:
            raise SetupError(f"counterctl keys create failed ({out.returncode}): {out.stderr}")
        keys.append(lines[-1].strip())
    return keys


def verify_tenants(tenants: list[str], backend_env: dict[str, str]) -> int:
    """``counterctl verify`` per tenant (another view of durability); its worst exit code."""
    worst = 0
    for tenant in tenants:
        out = subprocess.run(
            [str(BIN / "counterctl"), "verify", "--tenant", tenant],
            env={**os.environ, **backend_env}, cwd=REPO, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        if out.returncode == 2 and "invalid choice" in out.stderr:
            print("loadtest: this counterctl has no `verify`; skipped", flush=True)
            return 0
        last = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
        print(f"loadtest: counterctl verify --tenant {tenant}: exit {out.returncode}: {last}",
              flush=True)  # fmt: skip
        if out.returncode != 0:
            print(out.stdout + out.stderr, flush=True)
        worst = max(worst, 1 if out.returncode else 0)
    return worst


def locust_commands(
    host: str, workers: int, files: str, tag: str, reports: Path
) -> list[list[str]]:
    """The master (or only) process first, then the workers."""
    users = env_int("LOADTEST_USERS", 10)
    rate = os.environ.get("LOADTEST_SPAWN_RATE", "").strip() or "10"
    duration = os.environ.get("LOADTEST_DURATION", "").strip() or "45s"
    main = [
        str(BIN / "locust"), "-f", files, "--headless", "--only-summary",
        "-u", str(users), "-r", rate, "-t", duration, "--host", host,
        "--stop-timeout", str(env_int("LOADTEST_STOP_TIMEOUT", 5)),
        "--html", str(reports / f"{tag}.html"), "--csv", str(reports / tag),
        "--summary-json", str(reports / f"{tag}-invariants.json"),
    ]  # fmt: skip
    if not workers:
        return [main]
    port = free_port()
    main += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
             "--expect-workers", str(workers)]  # fmt: skip
    worker = [str(BIN / "locust"), "-f", files, "--worker", "--master-host", "127.0.0.1",
              "--master-port", str(port)]  # fmt: skip
    return [main] + [worker] * workers


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_locust(commands: list[list[str]], env: dict[str, str], limit: float) -> int:
    """Start them all; wait for the master, bounded by ``limit`` seconds; never leave one behind."""
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env) for cmd in commands]
    try:
        try:
            code = procs[0].wait(timeout=limit)
        except subprocess.TimeoutExpired:
            print(f"loadtest: locust still running after {limit:.0f} s; stopping it", flush=True)
            procs[0].terminate()  # Locust shuts down on SIGTERM and still checks
            try:
                procs[0].wait(timeout=60)
            except subprocess.TimeoutExpired:
                procs[0].kill()
            code = 1
        for proc in procs[1:]:  # workers quit when the master does
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.terminate()
        return code
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def main() -> int:
    scenario = os.environ.get("LOADTEST_SCENARIO", "").strip() or "all"
    names = list(SCENARIOS) if scenario == "all" else [s.strip() for s in scenario.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SetupError(
            f"LOADTEST_SCENARIO: unknown {unknown}; choose from all, {', '.join(SCENARIOS)}"
        )
    files = ",".join(str(HERE / SCENARIOS[n]) for n in names)
    workers = env_int("LOADTEST_WORKERS", 0)
    pg_check = os.environ.get("LOADTEST_PG_CHECK", "").strip() or "auto"
    started_stack = False
    tenants: list[str] = []  # the ones this script made keys for
    env = dict(os.environ)
    host = os.environ.get("LOADTEST_HOST", "").strip()
    try:
        if host:
            backend = {k: v for k, v in os.environ.items() if k.startswith("COUNTER_")}
            flusher = pg_check == "on" or bool(env.get("LOADTEST_PG_DSN"))
        else:
            backend = stack_ready() or {}
            if not backend:
                if devstack("up") != 0:
                    raise SetupError("python -m devstack up failed (see above)")
                started_stack = True
                backend = stack_ready() or {}
                if not backend:
                    raise SetupError("the stack came up but does not answer /readyz")
            host = backend["COUNTER_URL"]
            flusher = flusher_running()
            env["LOADTEST_PG_DSN"] = backend["COUNTER_PG_DSN"]
        if pg_check == "off" or (pg_check == "auto" and not flusher):
            env.pop("LOADTEST_PG_DSN", None)
            print(
                "loadtest: PostgreSQL == Redis check off"
                + ("" if pg_check == "off" else " (no flusher is running)"),
                flush=True,
            )
        elif not env.get("LOADTEST_PG_DSN"):
            env["LOADTEST_PG_DSN"] = backend.get("COUNTER_PG_DSN", "")
        if not env.get("LOADTEST_API_KEYS"):
            if not backend.get("COUNTER_PG_DSN"):
                raise SetupError("no LOADTEST_API_KEYS and no COUNTER_PG_DSN to create keys with")
            tenants = [f"loadtest-{i}" for i in range(1, env_int("LOADTEST_TENANTS", 3) + 1)]
            env["LOADTEST_API_KEYS"] = ",".join(create_keys(tenants, backend))
        reports = Path(os.environ.get("LOADTEST_REPORTS", "") or HERE / "reports")
        reports.mkdir(parents=True, exist_ok=True)
        tag = "+".join(names) if scenario != "all" else "all"
        commands = locust_commands(host, workers, files, tag, reports)
        limit = seconds(os.environ.get("LOADTEST_DURATION", "").strip() or "45s") + 180
        print(
            f"loadtest: {tag} against {host}: {' '.join(commands[0][3:])}"
            f"{f' + {workers} workers' if workers else ''}",
            flush=True,
        )
        code = run_locust(commands, env, limit)
        if tenants and env.get("LOADTEST_PG_DSN") and os.environ.get("LOADTEST_VERIFY") != "0":
            code = max(code, verify_tenants(tenants, backend))
        print(f"loadtest: reports in {reports}/{tag}*; exit code {code}", flush=True)
        return code
    finally:
        if started_stack and os.environ.get("LOADTEST_KEEP_STACK") != "1":
            devstack("down")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SetupError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        sys.exit(2)
