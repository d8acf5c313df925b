"""Event listeners: options, start values, collecting tallies, the end-of-run verdict.

* test_start (master or the only process): read every scenario counter's value
  before any load; workers only reset their tally.
* test_stopping (master): ask every worker to stop its users and send its tally
  (custom messages ``counterload_collect`` / ``counterload_tally``), and wait for them.
  Stopping first means the final values are read after all load has ended.
* quitting (master or the only process): check everything, print the summary, set
  ``environment.process_exit_code`` (1 on any violation, else 0: failed requests
  within the error-ratio threshold do not fail the run on their own).
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.runners import STATE_MISSING, STATE_STOPPED, MasterRunner, WorkerRunner

from .api import ReadError, read_values
from .endcheck import evaluate
from .invariants import Violation
from .options import Config, add_options
from .tally import Tally
from .thresholds import LoadStats

log = logging.getLogger("loadtest")
COLLECT, TALLY = "counterload_collect", "counterload_tally"
COLLECT_SLACK = 30.0  # seconds, on top of --stop-timeout, for workers to answer


class _State:
    def __init__(self) -> None:
        self.config: Config | None = None
        self.run_id = ""
        self.tally = Tally()
        self.starts: dict[str, int] = {}
        self.local = False  # one process: GETs are checked against attempts as they happen
        self.problems: list[Violation] = []
        self.received: dict[str, Tally] = {}
        self.expected: set[str] = set()
        self.collected = False


STATE = _State()


def config(environment: Any) -> Config:
    return Config.from_options(environment.parsed_options)


def read_limit(cid: str) -> int | None:
    """start + attempted - rejected so far, when this process sees every attempt."""
    if not STATE.local or cid not in STATE.starts:
        return None
    c = STATE.tally.of(cid)
    return STATE.starts[cid] + c.attempted - c.rejected


def _options(parser: Any) -> None:
    add_options(parser)


def _init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(COLLECT, _on_collect, concurrent=True)
        return  # options (run id, keys) arrive from the master with the spawn message
    if isinstance(runner, MasterRunner):
        runner.register_message(TALLY, _on_tally)
    options = environment.parsed_options
    if options is not None and not environment.host:
        raise ValueError('no target: pass --host (e.g. --host "$COUNTER_URL")')
    if options is not None and not options.run_id:
        options.run_id = f"lt{time.strftime('%m%d%H%M%S')}{uuid.uuid4().hex[:6]}"
    if options is not None:
        config(environment)  # bad options stop the run here, with the reason


def _test_start(environment: Any, **_: Any) -> None:
    cfg = STATE.config = config(environment)
    STATE.run_id, STATE.tally, STATE.problems = cfg.run_id, Tally(), []
    STATE.received, STATE.expected, STATE.collected = {}, set(), False
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    STATE.local = not isinstance(runner, MasterRunner)
    cids = sorted({
        cid for cls in environment.user_classes if hasattr(cls, "counters")
        for cid in cls.counters(cfg, cfg.run_id)
    })  # fmt: skip
    try:
        STATE.starts = read_values(environment.host, cfg.api_keys, cids, cfg.request_timeout)
    except (ReadError, ValueError, IndexError) as exc:
        STATE.problems.append(Violation("completeness", "run", "start values read", str(exc)))
        log.error("cannot read start values (%s); stopping", exc)
        gevent.spawn(runner.quit)
        return
    log.info("run %s: read start values of %d counters", cfg.run_id, len(cids))


def _test_stopping(environment: Any, **_: Any) -> None:
    if isinstance(environment.runner, MasterRunner) and not STATE.collected:
        _collect(environment.runner, environment.stop_timeout or 0.0)


def _collect(runner: MasterRunner, stop_timeout: float) -> None:
    STATE.expected = {c.id for c in runner.clients.all if c.state != STATE_MISSING}
    runner.send_message(COLLECT)
    deadline = time.monotonic() + stop_timeout + COLLECT_SLACK
    while not STATE.expected <= STATE.received.keys() and time.monotonic() < deadline:
        gevent.sleep(0.1)
    STATE.collected = True
    if not STATE.expected:
        STATE.problems.append(Violation("completeness", "run", "workers", "none connected"))
    missing = sorted(STATE.expected - STATE.received.keys())
    if missing:
        STATE.problems.append(Violation(
            "completeness", "run", f"tallies from {len(STATE.expected)} workers",
            f"none from {', '.join(missing)}: their attempts are unknown",
        ))  # fmt: skip


def _on_collect(environment: Any, msg: Any, **_: Any) -> None:
    """Worker: stop users (letting tasks finish within --stop-timeout), send the tally."""
    environment.runner.stop()
    environment.runner.send_message(TALLY, STATE.tally.to_wire())


def _on_tally(environment: Any, msg: Any, **_: Any) -> None:
    STATE.received[msg.node_id] = Tally.from_wire(msg.data)


def _quitting(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or STATE.config is None:
        return
    try:
        _verdict(environment, runner)
    except Exception:
        log.exception("the invariant checker crashed: nothing is proven, failing the run")
        environment.process_exit_code = 1


def _verdict(environment: Any, runner: Any) -> None:
    assert STATE.config is not None
    tally, workers = STATE.tally, "local"
    if isinstance(runner, MasterRunner):
        tally = Tally()
        for worker_tally in STATE.received.values():
            tally.merge(worker_tally)
        workers = f"{len(STATE.received)} of {len(STATE.expected)} workers reported"
    elif runner.state != STATE_STOPPED:
        runner.stop()  # Ctrl-C / SIGTERM: stop the load before reading final values
    if runner.exceptions:
        count = sum(e["count"] for e in runner.exceptions.values())
        STATE.problems.append(Violation(
            "completeness", "run", "no errors in user code", f"{count} exception(s), see the report"
        ))  # fmt: skip
    summary = evaluate(
        host=environment.host, config=STATE.config, run_id=STATE.run_id, starts=STATE.starts,
        tally=tally, stats=LoadStats.from_locust(environment.stats.total),
        problems=STATE.problems, workers=workers,
    )  # fmt: skip
    print(summary.render(), flush=True)
    if STATE.config.summary_json:
        path = Path(STATE.config.summary_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(summary.to_json() + "\n")
    environment.process_exit_code = 0 if summary.passed else 1


# Registered once, when the first scenario file imports this module.
events.init_command_line_parser.add_listener(_options)
events.init.add_listener(_init)
events.test_start.add_listener(_test_start)
events.test_stopping.add_listener(_test_stopping)
events.quitting.add_listener(_quitting)
