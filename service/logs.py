"""One JSON line per event on stderr. API keys are never passed to a logger."""

from __future__ import annotations

import logging
import sys

import orjson

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def setup_logging(level: str = "INFO") -> None:
    """Idempotent: installs the JSON handler on the root logger once."""
    root = logging.getLogger()
    root.setLevel(level)
    # An outage is logged once by the service (OutageLog); psycopg's pool would add a
    # line for every reconnection attempt of every worker.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)


class OutageLog:
    """Logs a backend going down once and coming back once, not once per request.

    During an outage every request fails; one line per failure would flood the log
    at thousands of requests per second. Failures are still counted per request
    (``counter_http_errors_total{status="503"}``).
    """

    def __init__(
        self,
        log: logging.Logger,
        backend: str,
        *,
        down: str = "",
        up: str = "",
        down_level: int = logging.WARNING,
        up_level: int = logging.INFO,
    ) -> None:
        """``down`` / ``up``: what the change means to this process, added to its line."""
        self.log = log
        self.backend = backend
        self.down = False
        self._down = (down_level, f"{backend} unavailable{down}")
        self._up = (up_level, f"{backend} available again{up}")

    def failed(self, exc: BaseException | str) -> bool:
        """Record a failure; True (and one log line) when the backend was up until now."""
        if self.down:
            return False
        self.down = True
        level, line = self._down
        self.log.log(level, line, extra={"backend": self.backend, "error": str(exc)})
        return True

    def ok(self) -> None:
        # PERF: one attribute test on the success path.
        if self.down:
            self.down = False
            level, line = self._up
            self.log.log(level, line, extra={"backend": self.backend})
