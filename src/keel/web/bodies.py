"""Request bodies read whole, within a size limit and a deadline, before an app sees them.

A slow client then holds no slot of the app's and is dropped at the deadline, and a body over
the limit is refused before it is parsed. :func:`answer` and :func:`send_json` write JSON
answers in plain ASGI.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BoundedBodies:
    """Reads each request's whole body first.

    Over ``max_bytes`` is 413, not complete within ``timeout`` s is 408.

    For apps without :class:`Guard` (the governance service); both refusals close the connection.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = 1_000_000, timeout: float = 10.0) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await whole_body(receive, send, max_bytes=self.max_bytes, timeout=self.timeout)
        if not isinstance(body, int):
            await self.app(scope, replay(body, receive), send)


async def whole_body(
    receive: Receive, send: Send, *, max_bytes: int, timeout: float
) -> bytes | int:
    """The request's whole body, or the status answered instead.

    That is 408 (slow), 413 (large) or 499 (client gone).
    """
    try:
        async with asyncio.timeout(timeout):
            body = await read_body(receive, max_bytes)
    except TimeoutError:
        return await answer(
            send, 408, f"request body not received within {timeout:g} s", close=True
        )
    except BodyTooLarge:
        return await answer(
            send, 413, f"request body over the limit of {max_bytes} bytes", close=True
        )
    return 499 if body is None else body


class BodyTooLarge(Exception):
    """A request body over the limit."""


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None when the client disconnected first.

    A body over ``max_bytes`` raises :class:`BodyTooLarge`.
    """
    chunks, seen = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > max_bytes:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body already read, then waits for a disconnect."""
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


async def answer(
    send: Send, status: int, detail: str, *, retry_after: int | None = None, close: bool = False
) -> int:
    """Send a whole JSON answer ``{"detail": ...}`` and return its status.

    ``close`` ends the connection after it.
    """
    return await send_json(send, status, {"detail": detail}, retry_after=retry_after, close=close)


async def send_json(
    send: Send, status: int, content: Any, *, retry_after: int | None = None, close: bool = False
) -> int:
    """Send ``content`` as a whole JSON answer and return its status."""
    body = orjson.dumps(content)
    headers: list[tuple[bytes, Any]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
