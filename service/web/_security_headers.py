"""Headers every answer carries against sniffing, framing and leaking referrers, and the
Content-Security-Policy of the studio page (no inline script or style, no frames)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_ALWAYS = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"))


def content_security_policy(api_origins: Iterable[str]) -> str:
    """The studio page's policy: its own scripts and styles only; it talks to this
    service and the given origins (e.g. Supabase Storage's signed image URLs)."""
    others = " ".join(sorted({_origin(u) for u in api_origins if u}))
    extra = f" {others}" if others else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        f"img-src 'self' data:{extra}; connect-src 'self'{extra}; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class SecurityHeaders:
    """Adds `nosniff` and `no-referrer` to every answer, and `csp` to HTML ones."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _ALWAYS:
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", self.csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)
