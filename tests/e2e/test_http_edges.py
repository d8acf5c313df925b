"""Every answer the server gives, including meinheld's own before the app, on a raw socket.

The service runs under gunicorn + meinheld (the build from deploy/build_meinheld.py)
with short read deadlines, so the tests that wait for them stay short.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import Settings
from tests.builders import NewTenant, backend_settings
from tests.e2e.raw_http import closed_by_peer, connect, exchange, read_reply
from tests.e2e.server import Gunicorn, settings_env
from tests.keypool import KeyPool

HEADER_TIMEOUT = 2  # COUNTER_HEADER_TIMEOUT and COUNTER_BODY_TIMEOUT of the service here
COUNTER = "/v1/misc/counter/edges"
ALLOW = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"}


@pytest.fixture(scope="module")
def port(
    request: pytest.FixtureRequest,
    pg_dsns: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[int]:
    settings: Settings = backend_settings(request, "single", pg_dsns["single"])
    env = settings_env(
        settings,
        COUNTER_WORKERS="1",
        COUNTER_HEADER_TIMEOUT=str(HEADER_TIMEOUT),
        COUNTER_BODY_TIMEOUT=str(HEADER_TIMEOUT),
        COUNTER_WORKER_CONNECTIONS="2000",
        COUNTER_MAX_BODY_BYTES="4096",  # the limits below are measured against 4 KiB
    )
    log: Path = tmp_path_factory.mktemp("edges") / "gunicorn.log"
    server = Gunicorn(env, log)
    try:
        server.wait_ready()
        yield server.port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def key(new_tenant_module: NewTenant) -> str:
    return new_tenant_module("edge")[1]


@pytest.fixture(scope="module")
def new_tenant_module(key_pool: KeyPool) -> NewTenant:
    return key_pool.take  # keys made ahead, in every backend's database


def req(line: str, *headers: str, body: bytes = b"") -> bytes:
    return "\r\n".join([line, "Host: t", *headers, "", ""]).encode() + body


# -- methods -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["QUERY", "FOO", "M-SEARCH", "PURGE", "PATCH"])
def test_a_method_the_counter_lacks_is_a_json_405_with_allow(port: int, method: str) -> None:
    reply = exchange(port, req(f"{method} {COUNTER} HTTP/1.1"))
    assert reply.status == 405 and reply.is_error_shape("method_not_allowed"), reply.raw
    assert {m.strip() for m in reply.headers["allow"].split(",")} == ALLOW


def test_an_unknown_method_later_on_a_keep_alive_connection_is_a_405(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(req("GET /healthz HTTP/1.1"))
        assert read_reply(sock).status == 200
        sock.sendall(req(f"QUERY {COUNTER} HTTP/1.1"))
        assert read_reply(sock).status == 405


def test_an_unknown_method_pipelined_behind_another_request_is_a_json_400(port: int) -> None:
    """The case left to meinheld's parser (docs/http-edges.md): the packet gets one JSON 400."""
    with connect(port) as sock:
        sock.sendall(req("GET /healthz HTTP/1.1") + req(f"QUERY {COUNTER} HTTP/1.1"))
        reply = read_reply(sock)
        assert reply.status == 400 and reply.is_error_shape("bad_request")
        assert closed_by_peer(sock)


def test_an_unknown_method_on_an_unknown_route_is_a_json_404(port: int) -> None:
    reply = exchange(port, req("QUERY /nowhere HTTP/1.1"))
    assert reply.status == 404 and reply.is_error_shape("not_found")


def test_an_unknown_method_never_runs_as_get(port: int, key: str) -> None:
    # Stock meinheld handed methods outside its table to the app as GET.
    reply = exchange(port, req(f"NOTIFY {COUNTER} HTTP/1.1", f"requiems-api-key: {key}"))
    assert reply.status == 405


def test_head_is_get_without_a_body_and_keeps_the_connection(port: int, key: str) -> None:
    with connect(port) as sock:
        sock.sendall(req(f"HEAD {COUNTER} HTTP/1.1", f"requiems-api-key: {key}"))
        head = read_reply(sock, head_only=True)
        sock.sendall(req(f"GET {COUNTER} HTTP/1.1", f"requiems-api-key: {key}"))
        get = read_reply(sock)
    assert head.status == 200 and head.body == b""
    assert head.raw.endswith(b"\r\n\r\n")  # nothing after the headers
    assert int(head.headers["content-length"]) == len(get.body) > 0
    assert get.status == 200 and get.json()["data"]["namespace"] == "edges"


def test_head_without_a_key_is_the_401_without_a_body(port: int) -> None:
    reply = exchange(port, req(f"HEAD {COUNTER} HTTP/1.1"), head_only=True)
    assert reply.status == 401 and reply.body == b""
    assert reply.headers["content-type"].startswith("application/json")


# -- malformed requests: meinheld's parser answers, in the JSON shape ----------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        b"GET /healthz HTTX/1.1\r\nHost: t\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
        b"GET /he\x01lthz HTTP/1.1\r\nHost: t\r\n\r\n",
        b"hello world\r\n\r\n",
        # Content-Length with chunked: a smuggling attempt
        b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
)
def test_a_malformed_request_is_a_json_400(port: int, data: bytes) -> None:
    reply = exchange(port, data)
    assert reply.status == 400 and reply.is_error_shape("bad_request"), reply.raw
    assert reply.headers["connection"] == "close"


def test_a_request_ended_before_its_headers_is_a_json_400(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        sock.shutdown(socket.SHUT_WR)
        reply = read_reply(sock)
    assert reply.status == 400 and reply.is_error_shape("bad_request")


def test_an_unsupported_expectation_is_a_json_417(port: int) -> None:
    reply = exchange(port, req("POST /healthz HTTP/1.1", "Expect: teapot", "Content-Length: 0"))
    assert reply.status == 417 and reply.is_error_shape("bad_request")


# -- sizes ---------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_sent(port: int, key: str) -> None:
    """Content-Length over COUNTER_MAX_BODY_BYTES: 413 with no byte of the body sent."""
    with connect(port, timeout=5) as sock:
        sock.sendall(
            req(f"POST {COUNTER} HTTP/1.1", f"requiems-api-key: {key}", "Content-Length: 4097")
        )
        reply = read_reply(sock)  # would wait for the body if meinheld buffered it first
    assert reply.status == 413 and reply.is_error_shape("payload_too_large")


def test_a_chunked_body_over_the_limit_is_a_json_413(port: int, key: str) -> None:
    chunk = b"1000\r\n" + b"x" * 4096 + b"\r\n"
    data = req(f"POST {COUNTER} HTTP/1.1", f"requiems-api-key: {key}", "Transfer-Encoding: chunked")
    with connect(port, timeout=5) as sock:
        sock.sendall(data + chunk)
        sock.sendall(chunk)
        reply = read_reply(sock)
    assert reply.status == 413 and reply.is_error_shape("payload_too_large")


def test_a_body_within_the_limit_is_served(port: int, key: str) -> None:
    body = b'{"by": 1}'.ljust(4096)  # JSON with trailing blanks, exactly at the limit
    reply = exchange(
        port,
        req(
            f"POST {COUNTER} HTTP/1.1",
            f"requiems-api-key: {key}",
            f"Content-Length: {len(body)}",
            body=body,
        ),
    )
    assert reply.status == 200


def test_too_many_header_fields_are_a_json_431(port: int) -> None:
    # COUNTER_MAX_HEADERS is 64: Host and 64 more is one too many, Host and 63 fit.
    reply = exchange(port, req("GET /healthz HTTP/1.1", *(f"X-H{i}: v" for i in range(64))))
    assert reply.status == 431 and reply.is_error_shape("bad_request")
    assert (
        exchange(port, req("GET /healthz HTTP/1.1", *(f"X-H{i}: v" for i in range(63)))).status
        == 200
    )


def test_header_bytes_over_the_limit_are_a_json_431(port: int) -> None:
    reply = exchange(port, req("GET /healthz HTTP/1.1", "X-Big: " + "v" * 16384))
    assert reply.status == 431 and reply.is_error_shape("bad_request")
    assert exchange(port, req("GET /healthz HTTP/1.1", "X-Big: " + "v" * 15000)).status == 200


def test_a_request_target_too_long_is_a_json_414(port: int) -> None:
    reply = exchange(port, req("GET /healthz?" + "q" * 9000 + " HTTP/1.1"))
    assert reply.status == 414 and reply.is_error_shape("bad_request"), reply.raw


# -- time ----------------------------------------------------------------------------


def _wait_closed(sock: socket.socket, within: float) -> float:
    start = time.monotonic()
    sock.settimeout(within)
    assert closed_by_peer(sock), f"still open after {within} s"
    return time.monotonic() - start


def test_headers_trickling_in_get_a_json_408_at_the_header_deadline(port: int) -> None:
    """A byte every half second would have pushed stock meinheld's 30 s timeout back forever."""
    with connect(port) as sock:
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        sock.settimeout(0.5)
        got = b""
        while time.monotonic() - start < HEADER_TIMEOUT + 6:
            try:
                sock.sendall(b"X")
                got += sock.recv(65536)
                if got:
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        elapsed = time.monotonic() - start
    assert got.startswith(b"HTTP/1.1 408 "), got
    assert b'"error":"bad_request"' in got
    assert HEADER_TIMEOUT - 0.5 <= elapsed < HEADER_TIMEOUT + 4, elapsed


def test_a_body_that_stops_arriving_gets_a_json_408(port: int, key: str) -> None:
    with connect(port) as sock:
        sock.sendall(
            req(f"POST {COUNTER} HTTP/1.1", f"requiems-api-key: {key}", "Content-Length: 10")
            + b"12345"
        )
        sock.settimeout(HEADER_TIMEOUT + 4)
        reply = read_reply(sock)
    assert reply.status == 408 and reply.is_error_shape("bad_request")


def test_a_connection_that_sends_nothing_is_closed_silently(port: int) -> None:
    with connect(port) as sock:
        sock.settimeout(HEADER_TIMEOUT + 4)
        assert sock.recv(65536) == b""


def test_a_thousand_half_sent_headers_are_all_closed_by_the_deadline(port: int) -> None:
    """The issue's slowloris: 3,000 connections with half a header were all held 20 s later."""
    socks = []
    try:
        for _ in range(1000):
            s = connect(port)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Half: ")
            socks.append(s)
        opened = time.monotonic()
        assert exchange(port, req("GET /healthz HTTP/1.1")).status == 200  # still serving
        still_open = 0
        for s in socks:
            left = max(0.1, opened + HEADER_TIMEOUT + 6 - time.monotonic())
            s.settimeout(left)
            if not closed_by_peer(s):
                still_open += 1
        assert still_open == 0
    finally:
        for s in socks:
            s.close()
