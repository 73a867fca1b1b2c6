"""ASGI middleware of the scoring API: body limit, load shedding, request deadline and metrics.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request: at sub-millisecond latency that overhead is most of the budget.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.serving.metrics import Metrics


class BodyLimit:
    """A request body over ``max_bytes`` gets 413 before any parsing."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"request body over the limit of {self.max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await answer(send, 413, too_large)
            return
        seen = 0

        async def counted() -> Message:
            # A body without a length (chunked) is counted as it arrives. An HTTPException, because
            # FastAPI turns any other error raised while it reads the body into a 400.
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, counted, send)


class Guard:
    """Counts every request, sheds scoring requests beyond ``max_in_flight`` and answers 503 past the deadline.

    Shedding and timeouts answer 503 with ``Retry-After``, so a client or load balancer
    retries elsewhere; probes and metrics are never shed.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, *, max_in_flight: int, timeout: float) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = Metrics.route(scope["path"])
        status = 500  # if the app raises before answering
        started = False

        async def observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        scoring = route.startswith("/v1/")
        try:
            if scoring and self.in_flight >= self.max_in_flight:
                self.metrics.shed.labels("overload").inc()
                status = await answer(send, 503, f"over {self.max_in_flight} requests in flight; retry shortly",
                                      retry_after=1)
                return
            self.in_flight += int(scoring)
            self.metrics.in_flight.set(self.in_flight)
            try:
                async with asyncio.timeout(self.timeout):
                    await self.app(scope, receive, observed)
            except TimeoutError:
                if started:
                    raise
                self.metrics.shed.labels("timeout").inc()
                status = await answer(send, 503, f"not answered within {self.timeout:g} s; retry shortly",
                                      retry_after=1)
            finally:
                self.in_flight -= int(scoring)
                self.metrics.in_flight.set(self.in_flight)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)


async def answer(send: Send, status: int, detail: str, *, retry_after: int | None = None) -> int:
    """Send a whole JSON answer ``{"detail": ...}`` and return its status."""
    return await send_json(send, status, {"detail": detail}, retry_after=retry_after)


async def send_json(send: Send, status: int, content: Any, *, retry_after: int | None = None) -> int:
    """Send ``content`` as a whole JSON answer and return its status."""
    body = orjson.dumps(content)
    headers: list[tuple[bytes, Any]] = [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status
