"""Ambiguous HTTP framing is refused by a real `keel serve`, so no request hides inside another.

Each attack sends one request whose length can be read two ways, followed by a second
request ("GET /smuggled") that a lenient server would answer as if the client had sent it.
The server must answer 400 and never reach the hidden request.
"""

from __future__ import annotations

import socket

import pytest

from server_process import Server

pytestmark = pytest.mark.slow

HIDDEN = b"GET /smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b'{"income": 20000, "debt": 30000, "late_payments": 3, "region": "east"}'


def _exchange(server: Server, raw: bytes) -> bytes:
    """Everything the server answers to ``raw`` until it closes or goes quiet for a second."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(raw)
        connection.settimeout(1)
        answer = b""
        try:
            while chunk := connection.recv(65536):
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return answer


def _head(*fields: bytes) -> bytes:
    return (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + b"\r\n"
    )


ATTACKS = {
    "length and chunked (CL.TE)": _head(b"Content-Length: 6", b"Transfer-Encoding: chunked")
    + b"0\r\n\r\n"
    + HIDDEN,
    "two different lengths": _head(b"Content-Length: 6", b"Content-Length: 71") + BODY + HIDDEN,
    "a signed length": _head(b"Content-Length: +71") + BODY + HIDDEN,
    "a space before the colon": _head(b"Content-Length : 71") + BODY + HIDDEN,
    "an obfuscated transfer coding": _head(b"Transfer-Encoding: chunked", b"Transfer-Encoding: x")
    + b"0\r\n\r\n"
    + HIDDEN,
    "a folded header": _head(b"X-A: 1", b" Transfer-Encoding: chunked", b"Content-Length: 71")
    + BODY
    + HIDDEN,
    "a bare LF in a chunk size": _head(b"Transfer-Encoding: chunked")
    + b"47\n"
    + BODY
    + b"\r\n0\r\n\r\n"
    + HIDDEN,
}


@pytest.mark.parametrize("raw", ATTACKS.values(), ids=ATTACKS.keys())
def test_ambiguous_framing_is_a_400_and_the_hidden_request_is_never_answered(
    served: Server, raw: bytes
) -> None:
    answer = _exchange(served, raw)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1, (
        answer
    )  # one answer: the hidden GET was never read as a request


def test_a_well_framed_pipeline_is_answered_in_order(served: Server) -> None:
    one = _head(f"Content-Length: {len(BODY)}".encode()) + BODY
    answer = _exchange(served, one + one)
    assert answer.count(b"HTTP/1.1 200 OK") == 2
