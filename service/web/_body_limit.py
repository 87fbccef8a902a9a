"""The request body limit: 413 before a handler reads more than `MAX_BODY_BYTES`."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import PayloadTooLarge
from ._responses import ErrorBody
from ._route_limits import policy_headers


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before the handler reads them
    all (by Content-Length, or while streaming a chunked body)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes // (1024 * 1024)} MB"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        info = PayloadTooLarge(self._message()).info
        headers = {"Connection": "close", **policy_headers(scope)}
        response = JSONResponse(ErrorBody.of(info), status_code=info.status, headers=headers)
        await response(scope, receive, send)
