"""``CounterUser``: increments and reads that tally what happened and check each body.

Scenarios subclass it, pick counters and call ``increment`` / ``read``. Every
request is grouped under a ``name=`` (no per-namespace rows in the statistics); a
wrong body is a Locust failure *and* a tallied violation, so it fails the run.
"""

from __future__ import annotations

import json
from typing import Any

from locust import FastHttpUser, constant

from . import lifecycle
from .api import BATCH_PATH, KEY_HEADER, PATH
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

    def increment(self, key_index: int, namespace: str, by: int = 1) -> None:
        """POST one increment of ``by``; tallies count amounts (the sum of ``by``s), so the
        end-of-run check is final == start + the sum of acknowledged ``by``s."""
        cid = counter_id(key_index, namespace)
        entry = self.tally.of(cid)
        entry.attempted += by  # before sending: an attempt killed in flight stays counted
        params = {"by": str(by)} if by != 1 else None
        with self.client.post(
            PATH + namespace, headers=self._headers[key_index], catch_response=True,
            params=params, name=f"{self.scenario}: POST /counter/[namespace]",
        ) as resp:  # fmt: skip
            if resp.status_code == 200:
                value, why = success_problem(_content_type(resp), _content(resp), namespace)
                if why or value < by:
                    self._violate(resp, "protocol", cid,
                                  f"POST 200 with a malformed body ({why or 'value < by'}): "
                                  f"{_text(resp)}")  # fmt: skip
                    return  # counted as indeterminate: it may have applied
                entry.acked += by
                entry.values.append(value)
                self._last_acked[cid] = max(self._last_acked.get(cid, 0), value)
            elif 400 <= resp.status_code < 500:
                entry.rejected += by  # the contract: a 4xx applied nothing
                self._refused(resp, cid, "POST")
            else:  # 0 (connection error, timeout), 5xx: outcome unknown
                self._refused(resp, cid, "POST", "outcome unknown: ")

    def batch(self, key_index: int, items: list[tuple[str, int]]) -> None:
        """POST many increments (namespace, by) in one request; each item is tallied on
        its own: a value acknowledges it, an item error of 4xx kind rejects it, and
        ``unavailable`` (or no answer at all) leaves it indeterminate."""
        entries = [self.tally.of(counter_id(key_index, ns)) for ns, _ in items]
        for entry, (_, by) in zip(entries, items, strict=True):
            entry.attempted += by
        body = {"increments": [{"namespace": ns, "by": by} for ns, by in items]}
        with self.client.post(
            BATCH_PATH, headers=self._headers[key_index], catch_response=True, json=body,
            name=f"{self.scenario}: POST /counters",
        ) as resp:  # fmt: skip
            if resp.status_code != 200:
                if 400 <= resp.status_code < 500:
                    for entry, (_, by) in zip(entries, items, strict=True):
                        entry.rejected += by
                self._refused(resp, "batch", "POST")
                return
            results = _results(resp)
            if results is None or len(results) != len(items):
                self._violate(resp, "protocol", "batch", f"malformed batch body: {_text(resp)}")
                return
            for entry, (ns, by), result in zip(entries, items, results, strict=True):
                cid = counter_id(key_index, ns)
                value = result.get("value") if isinstance(result, dict) else None
                if isinstance(value, int) and result.get("namespace") == ns and value >= by:
                    entry.acked += by
                    entry.values.append(value)
                    self._last_acked[cid] = max(self._last_acked.get(cid, 0), value)
                elif isinstance(result, dict) and _item_code(result) == "bad_request":
                    entry.rejected += by
                elif not (isinstance(result, dict) and _item_code(result) == "unavailable"):
                    self.tally.violation("protocol", f"{cid}: malformed batch item {result!r}")

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


def _results(resp: Any) -> list[Any] | None:
    try:
        results = json.loads(_content(resp))["data"]["results"]
    except (ValueError, KeyError, TypeError):
        return None
    return results if isinstance(results, list) else None


def _item_code(result: dict[str, Any]) -> str | None:
    error = result.get("error")
    return error.get("error") if isinstance(error, dict) else None


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
