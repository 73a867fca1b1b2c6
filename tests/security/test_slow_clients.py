"""Slow clients are dropped and never starve the others (issue 15, finding 2).

The attack: 260 connections each sent a scoring request's headers and then its body a byte
at a time; every ``--max-in-flight`` slot was theirs and all 17 normal requests sent meanwhile
got 503. Here 300 such connections are held open against a real `keel serve` while normal
clients score.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from server_process import serving

pytestmark = pytest.mark.slow

RECORD = {"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}
SLOW_HEAD = (
    b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b'Content-Length: 1000\r\n\r\n{"income": '
)


def _slow_bodies(port: int, count: int, source: str) -> list[socket.socket]:
    """``count`` connections from ``source``, each with a request half sent.

    Each sent headers and the first bytes of a body, and waits.
    """
    held = []
    for _ in range(count):
        connection = socket.create_connection(
            ("127.0.0.1", port), timeout=30, source_address=(source, 0)
        )
        connection.sendall(SLOW_HEAD)
        held.append(connection)
    return held


def _normal_requests(port: int, count: int) -> list[int]:
    """The status of each of ``count`` scoring requests, four clients at a time.

    Each request is on a new connection.
    """

    def one(_: int) -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            connection.request(
                "POST", "/v1/score", json.dumps(RECORD), {"content-type": "application/json"}
            )
            return connection.getresponse().status
        except OSError:
            return 0
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, range(count)))


def _answer(connection: socket.socket, wait: float) -> bytes:
    """What the server sent on ``connection`` until it closed it, waiting at most ``wait`` s."""
    connection.settimeout(wait)
    received = b""
    try:
        while chunk := connection.recv(65536):
            received += chunk
    except TimeoutError:
        received += b"<still open>"
    return received


@pytest.mark.parametrize(
    "attacker, options",
    [
        (
            "127.0.0.2",
            (),
        ),  # another client address, default limits: the per-client cap turns most away at once
        (
            "127.0.0.1",
            ("--max-per-client", "0"),
        ),  # the normal clients' own address with no cap: 300 bodies pending
    ],
    ids=["other-address", "same-address-no-cap"],
)
def test_300_slow_body_connections_leave_normal_requests_answered(
    champion_project, attacker, options
) -> None:
    with serving(
        champion_project, "--watch-seconds", "0", "--body-timeout", "60", *options
    ) as server:
        held = _slow_bodies(server.port, 300, attacker)
        try:
            statuses = _normal_requests(server.port, 200)
            refused_at_once = [c for c in held if _answer(c, 0.05).startswith(b"HTTP/1.1 503")]
        finally:
            for connection in held:
                connection.close()
    ok = statuses.count(200) / len(statuses)
    print(
        f"slow bodies from {attacker}: {ok:.1%} of {len(statuses)} normal requests got 200; "
        f"{len(refused_at_once)} of 300 slow connections refused at once"
    )
    assert ok >= 0.99, sorted(set(statuses))
    assert len(refused_at_once) == (300 - 64 if not options else 0)


def test_a_slow_body_a_slow_head_and_a_silent_connection_are_each_dropped(champion_project) -> None:
    with serving(
        champion_project, "--watch-seconds", "0", "--body-timeout", "1", "--header-timeout", "1"
    ) as server:
        [slow_body] = _slow_bodies(server.port, 1, "127.0.0.1")
        slow_head = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        slow_head.sendall(b"POST /v1/score HTTP/1.1\r\nHost: 127.0")
        silent = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        start = time.monotonic()
        body_answer, head_answer = _answer(slow_body, 10), _answer(slow_head, 10)
        silent_answer = _answer(silent, 15)
        silent_closed_after = time.monotonic() - start
    assert (
        body_answer.startswith(b"HTTP/1.1 408") and b"body not received within 1 s" in body_answer
    )
    assert (
        head_answer.startswith(b"HTTP/1.1 408")
        and b"headers not received within 1 s" in head_answer
    )
    assert silent_answer == b"" and silent_closed_after < 10  # uvicorn's keep-alive timeout: 5 s
