"""``CounterUser``: increments and reads that tally what happened and check each body.

Scenarios subclass it, pick counters and call ``increment`` / ``read``. Every
request is grouped under a ``name=`` (no per-namespace rows in the statistics); a
wrong body is a Locust failure *and* a tallied violation, so it fails the run.
"""

from __future__ import annotations

from typing import Any

from locust import FastHttpUser, constant

from . import lifecycle
from .api import KEY_HEADER, PATH
from .bodies import error_problem, success_problem
from .options import Config
from .tally import counter_id


class CounterUser(FastHttpUser):
    abstract = True
    wait_time = constant(0)  # as much contention as few users can make
    max_retries = 0  # never resend a POST: a resent increment could count twice
    scenario = "counter"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        """Every counter id this scenario may touch (their start values are read first)."""
        raise NotImplementedError

    def __init__(self, environment: Any) -> None:
        self.config = lifecycle.config(environment)
        self.network_timeout = self.connection_timeout = self.config.request_timeout
        super().__init__(environment)
        self.run_id = lifecycle.STATE.run_id
        self.tally = lifecycle.STATE.tally
        self._headers = [{KEY_HEADER: key} for key in self.config.api_keys]
        self._last_read: dict[str, int] = {}  # per user: GETs must never go down
        self._last_acked: dict[str, int] = {}  # per user: a GET sees this user's own writes

    def increment(self, key_index: int, namespace: str) -> None:
        cid = counter_id(key_index, namespace)
        entry = self.tally.of(cid)
        entry.attempted += 1  # before sending: an attempt killed in flight stays counted
        with self.client.post(
            PATH + namespace, headers=self._headers[key_index], catch_response=True,
            name=f"{self.scenario}: POST /counter/[namespace]",
        ) as resp:  # fmt: skip
            if resp.status_code == 200:
                value, why = success_problem(_content_type(resp), _content(resp), namespace)
                if why or value < 1:
                    self._violate(resp, "protocol", cid,
                                  f"POST 200 with a malformed body ({why or 'value 0'}): "
                                  f"{_text(resp)}")  # fmt: skip
                    return  # counted as indeterminate: it may have applied
                entry.acked += 1
                entry.values.append(value)
                self._last_acked[cid] = max(self._last_acked.get(cid, 0), value)
            elif 400 <= resp.status_code < 500:
                entry.rejected += 1  # the contract: a 4xx applied nothing
                self._refused(resp, cid, "POST")
            else:  # 0 (connection error, timeout), 5xx: outcome unknown
                self._refused(resp, cid, "POST", "outcome unknown: ")

    def read(self, key_index: int, namespace: str) -> None:
        cid = counter_id(key_index, namespace)
        with self.client.get(
            PATH + namespace, headers=self._headers[key_index], catch_response=True,
            name=f"{self.scenario}: GET /counter/[namespace]",
        ) as resp:  # fmt: skip
            if resp.status_code != 200:
                self._refused(resp, cid, "GET")
                return
            value, why = success_problem(_content_type(resp), _content(resp), namespace)
            if why:
                self._violate(
                    resp, "protocol", cid, f"GET 200 with a malformed body ({why}): {_text(resp)}"
                )
                return
            entry = self.tally.of(cid)
            entry.reads += 1
            entry.max_read = max(entry.max_read, value)
            previous = self._last_read.get(cid, -1)
            if value < previous:
                self._violate(resp, "reads", cid, f"GET went backwards: {previous} then {value}")
            elif value < self._last_acked.get(cid, 0):
                self._violate(
                    resp,
                    "reads",
                    cid,
                    f"GET {value} below this user's acknowledged increment {self._last_acked[cid]}",
                )
            elif (limit := lifecycle.read_limit(cid)) is not None and value > limit:
                self._violate(resp, "reads", cid, f"GET {value} > start + attempted = {limit}")
            self._last_read[cid] = value

    def _refused(self, resp: Any, cid: str, method: str, prefix: str = "") -> None:
        """A request that got no 200: a Locust failure; a violation when the body is wrong.

        Every answer with a status (4xx and 5xx alike) must carry the JSON error shape;
        only a request with no answer at all (status 0) has no body to check.
        """
        status = resp.status_code
        if status == 0:
            resp.failure(f"{prefix}no response: {resp.error}")
            return
        why = error_problem(_content_type(resp), _content(resp))
        if status < 400:
            why = f"status {status} where the contract has 200 or an error"
        if why:
            self._violate(resp, "protocol", cid,
                          f"{method} {status} without the JSON error shape ({why}): "
                          f"{_text(resp)}")  # fmt: skip
        else:
            resp.failure(f"{prefix}HTTP {status}: {_text(resp)}")

    def _violate(self, resp: Any, kind: str, cid: str, text: str) -> None:
        self.tally.violation(kind, f"{cid}: {text}")
        resp.failure(text)


def _content_type(resp: Any) -> str:
    return str(resp.headers.get("Content-Type") or "") if resp.headers else ""


def _content(resp: Any) -> bytes:
    try:
        return bytes(resp.content or b"")
    except Exception:  # a body that could not be read is no valid body
        return b""


def _text(resp: Any, limit: int = 200) -> str:
    try:
        return (resp.text or "")[:limit]
    except Exception:  # undecodable body: show nothing rather than fail the request
        return "<unreadable body>"
