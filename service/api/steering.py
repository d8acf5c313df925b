"""Spread new connections over the workers' own listeners, none to the master's.

Each meinheld worker listens on a ``SO_REUSEPORT`` socket of its own beside the one
the master holds (``service/api/worker.py``; the master's keeps connections queued
while every worker drains at once). Without a program the kernel hashes a new
connection to any socket of the group, the master's included, and every worker
accepts from the master's: whichever worker wakes first takes that share in a burst
(64 keep-alive clients connecting together: 38/26 on average over two workers, 44/20
in a benchmark run), and at a fixed load the worker holding most connections is the
first to queue. This classic BPF program picks a random socket among indexes
``1 .. workers`` of the group (the master's listener joined first: index 0). Where
that index does not exist (fewer listeners while a worker restarts) the kernel falls
back to its hash, so a connection is never left unaccepted: every listener of the
group is accepted by some worker.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51  # linux/asm-generic/socket.h
_LD_RANDOM = (0x20, 0, 0, 0xFFFFF000 + 56)  # A = prandom (SKF_AD_OFF + SKF_AD_RANDOM)
_MOD_K, _ADD_K, _RET_A = 0x94, 0x04, 0x16  # A %= k; A += k; return A


def program(workers: int) -> list[tuple[int, int, int, int]]:
    """The instructions: a random index in ``1 .. workers``."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return [_LD_RANDOM, (_MOD_K, 0, 0, workers), (_ADD_K, 0, 0, 1), (_RET_A, 0, 0, 0)]


def steer_to_workers(sock: socket.socket, workers: int) -> None:
    """Attach ``program(workers)`` to the reuseport group of listener ``sock``."""
    code = program(workers)
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in code))
    fprog = struct.pack("HL", len(code), ctypes.addressof(buf))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
