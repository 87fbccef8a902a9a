"""The request body limits: 413 before a handler reads more than `MAX_BODY_BYTES`, 400 when
the body does not arrive within its deadline (a client trickling bytes holds a worker)."""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import BodyTooSlow, PayloadTooLarge
from ._responses import ErrorBody
from ._route_limits import policy_headers

#: A 14 MB body at 1 Mbit/s takes two minutes.
BODY_TIMEOUT_S: Final = 120.0


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before the handler reads them
    all (by Content-Length, or while streaming a chunked body)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, body_timeout_s: float = BODY_TIMEOUT_S
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
                has_body = has_body or value.strip() not in (b"", b"0")
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body and scope["method"] in ("GET", "HEAD"):
            # A GET without Content-Length or Transfer-Encoding has no body (RFC 9112,
            # 6.3), and no GET handler reads one: nothing to limit or to wait for (an
            # event stream's GET is answered without a deadline and closure of its own).
            await self.app(scope, receive, send)
            return
        seen = 0
        deadline: float | None = None
        body_done = False

        async def limited() -> Message:
            nonlocal seen, deadline, body_done
            if body_done:  # after the body: e.g. waiting for a disconnect, no deadline
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.body_timeout_s
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow(
                    f"the request body did not arrive within {self.body_timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._message())
                body_done = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes // (1024 * 1024)} MB"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = PayloadTooLarge(self._message()).info
        headers = {"Connection": "close", **policy_headers(scope)}
        response = JSONResponse(ErrorBody.of(info), status_code=info.status, headers=headers)
        await response(scope, receive, send)
