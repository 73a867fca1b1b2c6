"""uvicorn's httptools protocol with the limits trusted servers keep on request heads.

uvicorn bounds none of these on its httptools protocol: one 50 MB header got 200, and a client
sending its headers a byte at a time held its connection for ever. Here:

- the request line and headers together are at most ``max_bytes`` (431), counted as they
  arrive, so an oversized header costs at most one read buffer beyond the limit;
- a request has at most ``max_count`` header fields (431);
- its headers must be complete within ``timeout`` s of its first byte (408);
- a connection that sends nothing is closed after uvicorn's keep-alive timeout, as an idle
  keep-alive connection already is.

Each refusal answers and closes the connection. The limits travel to worker processes in
the environment (:meth:`HeadLimits.export`); the body's limits are the app's
(:class:`~keel.web.bodies.BoundedBodies`, or the scoring API's Guard).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

_ENV = "KEEL_HEAD_LIMITS"


@dataclass(frozen=True)
class HeadLimits:
    """How large, how many and how slow a request's line and headers may be."""

    max_bytes: int = 32 * 1024
    max_count: int = 100
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1024 or self.max_count < 1 or self.timeout <= 0:
            raise ValueError(
                f"head limits need max_bytes >= 1024, max_count >= 1 and timeout > 0; got {self}"
            )

    def export(self) -> None:
        """Put the limits where worker processes read them."""
        os.environ[_ENV] = json.dumps(asdict(self))


@cache
def _limits() -> HeadLimits:
    return HeadLimits(**json.loads(os.environ.get(_ENV) or "{}"))


class Refused(Exception):
    """A request head over a limit: the status and reason to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class LimitedHttpTools(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that refuses oversized, overlong and slow request heads.

    It is uvicorn's ``http=``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = _limits()
        self._in_head = False  # between a request's first byte and the end of its headers
        self._began = False  # a request began in the data being parsed now
        self._streamed = (
            0  # bytes received in whole reads while in the head: bounds what the parser buffers
        )
        self._exact = 0  # bytes of the request line and the headers parsed so far
        self._count = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._began = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as error:
            refused = error.__context__
            if isinstance(refused, Refused):
                self._refuse(refused.status, refused.reason)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        if self._in_head and not self._began:  # the whole read was part of this request's head
            self._streamed += len(data)
            if self._streamed > self.limits.max_bytes:
                self._refuse(431, f"request line and headers over {self.limits.max_bytes} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._began = True, True
        self._streamed = self._exact = self._count = 0
        self._head_timer = self.loop.call_later(self.limits.timeout, self._head_too_slow)

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._grow(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count += 1
        if self._count > self.limits.max_count:
            raise Refused(431, f"more than {self.limits.max_count} header fields")
        self._grow(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._stop_head_timer()
        super().on_headers_complete()

    def _grow(self, size: int) -> None:
        self._exact += size
        if self._exact > self.limits.max_bytes:
            raise Refused(431, f"request line and headers over {self.limits.max_bytes} bytes")

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, f"request headers not received within {self.limits.timeout:g} s")

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` and close the connection.

        The answer is skipped when an earlier response on the connection is still being sent.
        """
        self._in_head = False
        self._stop_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            body = json.dumps({"detail": reason}).encode()
            self.transport.write(
                b"".join(
                    [
                        STATUS_LINE[status],
                        b"content-type: application/json\r\n",
                        b"content-length: ",
                        str(len(body)).encode(),
                        b"\r\n",
                        b"connection: close\r\n\r\n",
                        body,
                    ]
                )
            )
        self.transport.close()
