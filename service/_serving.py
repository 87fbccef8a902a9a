"""Serving on a bare port: uvicorn's httptools protocol with the limits slow and greedy
clients need, so `python -m service serve` withstands a slowloris from a few clients
without a proxy in front.

- A request's headers must arrive complete within `HEADER_TIMEOUT_S` of its first byte
  (or of the connection): 408 and the connection closed otherwise.
- They may take at most `MAX_HEADER_BYTES`: 431 and the connection closed otherwise.
- Idle keep-alive connections close after uvicorn's `timeout_keep_alive`; bodies must
  arrive within `web.BodyLimit`'s deadline.
"""

from __future__ import annotations

import asyncio
from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_S: Final = 10.0
MAX_HEADER_BYTES: Final = 64 * 1024
KEEP_ALIVE_S: Final = 5


def _refusal(status: int, reason: str) -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            ).encode("ascii")


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline and a size cap on request headers."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_header_bytes: int = MAX_HEADER_BYTES

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = True
        self._arm_deadline()

    def _arm_deadline(self) -> None:
        self._disarm_deadline()
        self._header_deadline = self.loop.call_later(
            self.header_timeout_s, self._refuse, 408, "Request Timeout")

    def _disarm_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def data_received(self, data: bytes) -> None:
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm_deadline()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # What arrives next is the next request's headers; its deadline starts once this
        # request's response is complete (a stream may take minutes).
        self._in_headers = True
        self._header_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._in_headers and not self.transport.is_closing():
            self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_deadline()
        super().connection_lost(exc)

    def _refuse(self, status: int, reason: str) -> None:
        if self.transport.is_closing():
            return
        self.logger.info("closing a connection: %s %s", status, reason)
        self.transport.write(_refusal(status, reason))
        self.transport.close()
