"""The end of a run: read final values, check every invariant, wait for the flush.

Runs once, on the master (or the only process), after every user has stopped.
"""

from __future__ import annotations

import logging

from .api import ReadError, read_values
from .durable import wait_for_flush
from .invariants import Violation, check_counter
from .options import Config
from .report import Summary
from .tally import Tally
from .thresholds import LoadStats, check_thresholds

log = logging.getLogger("loadtest")


def evaluate(
    *,
    host: str,
    config: Config,
    run_id: str,
    starts: dict[str, int],
    tally: Tally,
    stats: LoadStats,
    problems: list[Violation],
    workers: str,
) -> Summary:
    """Every check, in order; ``problems`` are run-level ones found earlier (setup, workers)."""
    summary = Summary(run_id=run_id, stats=stats, thresholds=config.thresholds, workers=workers)
    summary.violations += problems
    summary.inline_violations = list(tally.violations)
    summary.inline_violation_count = tally.violation_count
    summary.inline_kinds = dict(tally.violation_kinds)
    touched = sorted(cid for cid, c in tally.counters.items() if c.attempted or c.reads)
    written = [cid for cid in touched if tally.counters[cid].attempted]
    _totals(summary, tally, touched)
    if stats.requests and not touched:
        summary.violations.append(Violation(
            "completeness", "run", "tallies of the requests made",
            f"{stats.requests} requests but no counter tallied (lost worker tallies?)",
        ))  # fmt: skip
    try:
        finals = read_values(host, config.api_keys, touched, config.request_timeout)
    except ReadError as exc:
        finals = {}
        summary.violations.append(Violation("completeness", "run", "final values", str(exc)))
    for cid in touched if finals else []:
        if cid not in starts:
            summary.violations.append(Violation("completeness", cid, "a start value", "none read"))
        summary.violations += check_counter(
            cid, starts.get(cid, 0), finals[cid], tally.counters[cid]
        )
    summary.violations += check_thresholds(stats, config.thresholds)
    summary.durability = _durability(summary, host, config, written)
    return summary


def _totals(summary: Summary, tally: Tally, touched: list[str]) -> None:
    summary.counters = len(touched)
    for cid in touched:
        c = tally.counters[cid]
        summary.attempted += c.attempted
        summary.acked += c.acked
        summary.rejected += c.rejected
        summary.indeterminate += c.indeterminate
        summary.counters_indeterminate += c.indeterminate > 0
        summary.values += len(c.values)
        summary.reads += c.reads


def _durability(summary: Summary, host: str, config: Config, written: list[str]) -> str:
    if not config.pg_dsn:
        return "SKIPPED (no --pg-dsn / LOADTEST_PG_DSN: is a flusher running?)"
    if not written:
        return "SKIPPED (no increments)"
    log.info(
        "waiting up to %.0f s for the flusher to write %d counters", config.flush_wait, len(written)
    )

    def read_api(cids: list[str]) -> dict[str, int]:
        return read_values(host, config.api_keys, cids, config.request_timeout)

    try:
        found, waited = wait_for_flush(
            config.pg_dsn, config.api_keys, written, read_api, config.flush_wait
        )
    except Exception as exc:  # psycopg or HTTP failure: the check could not be made
        summary.violations.append(Violation(
            "durability", "run", "PostgreSQL readable", f"{type(exc).__name__}: {exc}"
        ))  # fmt: skip
        return "FAILED (could not check)"
    summary.violations += found
    if found:
        return f"FAILED ({len(found)} of {len(written)} counters differ after {waited:.1f} s)"
    return f"OK ({len(written)} counters equal after {waited:.1f} s)"
