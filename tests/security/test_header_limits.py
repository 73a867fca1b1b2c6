"""Request heads are bounded in size, field count and memory (issue 15, finding 3).

The attack: one 50 MB header got 200, and three 100 MB headers grew the server by 420 MB.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest

from server_process import Server

pytestmark = pytest.mark.slow

BODY = json.dumps({"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}).encode()


def _post(server: Server, headers: list[tuple[str, str]]) -> bytes:
    """Send a scoring request with extra ``headers``; return the status line.

    The status line is b"" when the server hung up.
    """
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    request = (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n{head}\r\n"
    ).encode() + BODY
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        # refused part way through: the answer may still be readable
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)
        try:
            return connection.recv(65536).split(b"\r\n")[0]
        except ConnectionResetError:
            return b""


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        / 1024
    )


def test_oversized_and_overlong_heads_get_431_and_cost_no_memory(served: Server) -> None:
    within = [
        _post(served, [("x-note", "a" * 30_000)]),
        _post(served, [(f"x-{i}", "1") for i in range(96)]),
    ]
    one_large = _post(served, [("x-big", "a" * 1_000_000)])
    too_many = _post(served, [(f"x-{i}", "1") for i in range(101)])
    before = _rss_mb(served.process.pid)
    huge = [_post(served, [("x-huge", "a" * 40_000_000)]) for _ in range(3)]
    grown = _rss_mb(served.process.pid) - before
    print(f"three 40 MB headers: {huge}; the server grew {grown:.1f} MB")
    assert within == [b"HTTP/1.1 200 OK"] * 2
    assert one_large == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert too_many == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert all(line in (b"HTTP/1.1 431 Request Header Fields Too Large", b"") for line in huge)
    assert grown < 20, f"the server grew {grown:.0f} MB"
