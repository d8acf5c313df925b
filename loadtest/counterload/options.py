"""The suite's own command-line options (each also read from a ``LOADTEST_*`` variable).

In distributed runs the master sends every custom option to its workers with the
spawn message, so a run id generated on the master reaches all workers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .thresholds import Thresholds

RUN_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _default_flush_wait() -> float:
    try:
        interval = float(os.environ.get("COUNTER_FLUSH_INTERVAL", "") or 1.0)
    except ValueError:
        interval = 1.0
    return 3 * interval + 5.0


def add_options(parser: Any) -> None:
    # On the parser itself, not a group: Locust's own add_argument knows is_secret.
    group = parser
    group.add_argument(
        "--api-keys", env_var="LOADTEST_API_KEYS", is_secret=True,
        default=os.environ.get("COUNTER_API_KEY", ""),
        help="comma-separated API keys, one per tenant (default: $COUNTER_API_KEY)",
    )  # fmt: skip
    group.add_argument(
        "--run-id", env_var="LOADTEST_RUN_ID", default="",
        help="prefix of this run's namespaces (default: generated, unique per run)",
    )  # fmt: skip
    group.add_argument(
        "--namespaces", env_var="LOADTEST_NAMESPACES", type=int, default=100,
        help="counters the many-counters scenario spreads over (Zipf), across all keys",
    )  # fmt: skip
    group.add_argument("--zipf-s", env_var="LOADTEST_ZIPF_S", type=float, default=1.1)
    group.add_argument(
        "--request-timeout", env_var="LOADTEST_REQUEST_TIMEOUT", type=float, default=10.0,
        help="seconds before a request counts as timed out (an indeterminate increment)",
    )  # fmt: skip
    group.add_argument(
        "--pg-dsn", env_var="LOADTEST_PG_DSN", default="", is_secret=True,
        help="PostgreSQL of the service; when set, checks PostgreSQL == Redis after a flush",
    )  # fmt: skip
    group.add_argument(
        "--flush-wait", env_var="LOADTEST_FLUSH_WAIT", type=float, default=_default_flush_wait(),
        help="seconds to wait for the flusher (default 3 x COUNTER_FLUSH_INTERVAL + 5)",
    )  # fmt: skip
    group.add_argument(
        "--max-error-ratio",
        env_var="LOADTEST_MAX_ERROR_RATIO",
        type=float,
        default=0.01,
        help="fail above this ratio of failed requests",
    )
    group.add_argument(
        "--max-p50-ms",
        env_var="LOADTEST_MAX_P50_MS",
        type=float,
        default=100.0,
        help="fail when the median response time is above (0: off)",
    )
    group.add_argument("--max-p95-ms", env_var="LOADTEST_MAX_P95_MS", type=float, default=500.0)
    group.add_argument("--max-p99-ms", env_var="LOADTEST_MAX_P99_MS", type=float, default=1000.0)
    group.add_argument(
        "--summary-json", env_var="LOADTEST_SUMMARY_JSON", default="",
        help="also write the invariant summary to this JSON file",
    )  # fmt: skip


@dataclass(frozen=True)
class Config:
    api_keys: tuple[str, ...]
    run_id: str
    namespaces: int
    zipf_s: float
    request_timeout: float
    pg_dsn: str
    flush_wait: float
    thresholds: Thresholds
    summary_json: str

    @classmethod
    def from_options(cls, o: Any) -> Config:
        keys = tuple(k.strip() for k in (o.api_keys or "").split(",") if k.strip())
        if not keys:
            raise ValueError("no API key: set LOADTEST_API_KEYS (or COUNTER_API_KEY) or --api-keys")
        if o.run_id and not RUN_ID_RE.fullmatch(o.run_id):
            raise ValueError("--run-id must be 1-40 chars of letters, digits, '-' or '_'")
        if o.namespaces < 1:
            raise ValueError("--namespaces must be >= 1")
        return cls(
            api_keys=keys, run_id=o.run_id, namespaces=o.namespaces, zipf_s=o.zipf_s,
            request_timeout=o.request_timeout, pg_dsn=o.pg_dsn, flush_wait=o.flush_wait,
            thresholds=Thresholds(o.max_error_ratio, o.max_p50_ms, o.max_p95_ms, o.max_p99_ms),
            summary_json=o.summary_json,
        )  # fmt: skip
