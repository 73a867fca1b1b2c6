"""ASGI middleware of the scoring API: per-client cap, whole body first, load shedding, deadline.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs a task and a
stream per request: at sub-millisecond latency that overhead is most of the budget.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from keel.serving.metrics import Metrics
from keel.web.bodies import answer, replay, whole_body

PROBES = frozenset({"/livez", "/readyz", "/metrics"})  # never capped, never shed


class Guard:
    """Guards the app against slow, greedy and overloading clients, and counts every request.

    Each request, in order:

    1. a client address with ``max_per_client`` requests open gets 503 (``0``: no cap; probes
       exempt);
    2. its whole body is read before it takes a scoring slot: over ``max_body_bytes`` is 413, not
       complete within ``body_timeout`` s is 408, and either closes the connection, so a slow
       client holds no slot and is dropped;
    3. a scoring request (``/v1/...``) beyond ``max_in_flight`` gets 503;
    4. one not answered within ``timeout`` s gets 503.

    Refusals carry ``Retry-After`` where retrying helps, so a client or load balancer retries
    elsewhere.
    """

    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        *,
        max_in_flight: int,
        timeout: float,
        max_body_bytes: int = 2_000_000,
        body_timeout: float = 10.0,
        max_per_client: int = 64,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.max_per_client = max_per_client
        self.in_flight = 0
        self.per_client: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = Metrics.route(scope["path"])
        client = (
            (scope.get("client") or ("", 0))[0]
            if self.max_per_client and route not in PROBES
            else None
        )
        status = 500  # if the app raises before answering
        try:
            if client is not None and self.per_client[client] >= self.max_per_client:
                status = await self._shed(
                    send,
                    "client",
                    f"over {self.max_per_client} requests open from one client; retry shortly",
                )
                return
            if client is not None:
                self.per_client[client] += 1
            try:
                status = await self._guarded(scope, receive, send, route)
            finally:
                if client is not None:
                    self.per_client[client] -= 1
                    if not self.per_client[client]:
                        del self.per_client[client]
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, route: str) -> int:
        """Steps 2 to 4 of the class's list, for one request; returns the status answered."""
        body = await whole_body(
            receive, send, max_bytes=self.max_body_bytes, timeout=self.body_timeout
        )
        if isinstance(body, int):
            if body == 408:
                self.metrics.shed.labels("slow_body").inc()
            return body
        scoring = route.startswith("/v1/")
        if scoring and self.in_flight >= self.max_in_flight:
            return await self._shed(
                send, "overload", f"over {self.max_in_flight} requests in flight; retry shortly"
            )
        status, started = 500, False

        async def observed(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        self.in_flight += int(scoring)
        self.metrics.in_flight.set(self.in_flight)
        try:
            async with asyncio.timeout(self.timeout):
                await self.app(scope, replay(body, receive), observed)
        except TimeoutError:
            if started:
                raise
            self.metrics.shed.labels("timeout").inc()
            return await answer(
                send, 503, f"not answered within {self.timeout:g} s; retry shortly", retry_after=1
            )
        finally:
            self.in_flight -= int(scoring)
            self.metrics.in_flight.set(self.in_flight)
        return status

    async def _shed(self, send: Send, reason: str, detail: str) -> int:
        self.metrics.shed.labels(reason).inc()
        return await answer(send, 503, detail, retry_after=1)
