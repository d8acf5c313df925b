"""Throwaway Redis servers that demand what managed services do: TLS and AUTH.

Certificates are made with ``openssl`` for each run: a CA, a server certificate
naming 127.0.0.1 and localhost (the servers also listen on 127.0.0.2, which it does
not name), a client certificate, and a second CA that signed nothing here. Servers
are plain ``redis-server`` processes (Debian's build has TLS): one node with TLS and
an ACL user, one node with only ``requirepass``, and a 3-master cluster with
``--tls-cluster yes`` and the ACL user. The default user is off where an ACL user
is configured, so a connection that skips AUTH can do nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from .ports import LOCALHOST, free_port, free_port_pair
from .procs import stop_popen

USER, PASSWORD = "counter", "s3cret-Pa55word"  # the ACL user the service logs in as
REQUIREPASS = "only-a-Pa55word"  # the default user's password on the requirepass node


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification against it must fail


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(base: Path) -> Certs:
    """A CA and the certificates signed by it, in ``base``."""
    base.mkdir(parents=True, exist_ok=True)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-new", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
            "-days", "2", "-subj", f"/CN=counter test {ca}", cwd=base,
        )  # fmt: skip
    (base / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        _openssl(
            "req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=counter test {name}", cwd=base,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=base,
        )  # fmt: skip
    return Certs(
        base / "ca.crt",
        base / "server.crt",
        base / "server.key",
        base / "client.crt",
        base / "client.key",
        base / "other-ca.crt",
    )


def _tls_args(port: int, certs: Certs) -> list[str]:
    return [
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(certs.server_cert),
        "--tls-key-file", str(certs.server_key),
        "--tls-ca-cert-file", str(certs.ca),
        "--tls-auth-clients", "yes",
    ]  # fmt: skip


# redis-server joins the words after --user into one config line: one argument each.
ACL_ARGS = ["--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*", "&*", "+@all"]


@dataclass
class SecureRedis:
    """redis-server processes under ``base``; ``stop`` ends them all."""

    base: Path
    certs: Certs
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def spawn(self, port: int, *args: str) -> None:
        node_dir = self.base / str(port)
        shutil.rmtree(node_dir, ignore_errors=True)
        node_dir.mkdir(parents=True)
        cmd = [
            "redis-server", "--bind", LOCALHOST, "127.0.0.2", "--save", "", "--appendonly", "no",
            "--dir", str(node_dir), "--maxmemory-policy", "noeviction", *args,
        ]  # fmt: skip
        with open(node_dir / "redis.log", "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=node_dir,
                    start_new_session=True,
                )  # fmt: skip
            )

    def client(self, port: int, tls: bool = True, **auth: Any) -> redis.Redis:
        """redis-py as an administrator of this test (TLS with the client certificate)."""
        extra: dict[str, Any] = {}
        if tls:
            extra = {
                "ssl": True,
                "ssl_ca_certs": str(self.certs.ca),
                "ssl_certfile": str(self.certs.client_cert),
                "ssl_keyfile": str(self.certs.client_key),
            }
        return redis.Redis(LOCALHOST, port, socket_timeout=5, **extra, **auth)

    def wait_ready(self, port: int, tls: bool = True, **auth: Any) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with self.client(port, tls, **auth) as r:
                    if r.ping():
                        return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)

    def start_single_tls_acl(self) -> int:
        """One node: TLS only (client certificates required), ACL user, default user off."""
        port = free_port()
        self.spawn(port, *_tls_args(port, self.certs), *ACL_ARGS)
        self.wait_ready(port, username=USER, password=PASSWORD)
        return port

    def start_single_requirepass(self) -> int:
        """One node: plain TCP, the default user with a password (``AUTH password``)."""
        port = free_port()
        self.spawn(port, "--port", str(port), "--requirepass", REQUIREPASS)
        self.wait_ready(port, tls=False, password=REQUIREPASS)
        return port

    def start_cluster_tls_acl(self, masters: int = 3) -> list[int]:
        """A cluster of TLS-only nodes (the bus too), ACL user; returns their ports."""
        ports = [free_port_pair(10000) for _ in range(masters)]
        for port in ports:
            self.spawn(
                port, *_tls_args(port, self.certs), *ACL_ARGS,
                "--tls-cluster", "yes", "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.base / str(port) / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            )  # fmt: skip
        for port in ports:
            self.wait_ready(port, username=USER, password=PASSWORD)
        cmd = [
            "redis-cli", "--cluster", "create", *(f"{LOCALHOST}:{p}" for p in ports),
            "--cluster-replicas", "0", "--cluster-yes", "--tls",
            "--cacert", str(self.certs.ca), "--cert", str(self.certs.client_cert),
            "--key", str(self.certs.client_key), "--user", USER, "--pass", PASSWORD,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if out.returncode != 0 or "[ERR]" in out.stdout:
            raise RuntimeError(f"cluster create failed:\n{out.stdout}{out.stderr}")
        deadline = time.monotonic() + 30
        for port in ports:
            with self.client(port, username=USER, password=PASSWORD) as r:
                while r.execute_command("CLUSTER", "INFO").find(b"cluster_state:ok") < 0:
                    assert time.monotonic() < deadline, "TLS cluster not ok"
                    time.sleep(0.2)
        return ports

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            stop_popen(proc, 10.0)
