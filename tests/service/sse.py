"""A small Server-Sent Events reader for tests (what EventSource does, minus retries)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class SSE:
    id: int
    event: str
    data: dict[str, Any]


async def events(response: httpx.Response) -> AsyncIterator[SSE]:
    """Events of a streaming response; comments (heartbeats) are skipped."""
    fields: dict[str, str] = {}
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield SSE(int(fields.get("id", "0")), fields.get("event", "message"),
                          json.loads("\n".join(data)))
            fields, data = {}, []
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value


async def collect(response: httpx.Response, *, stop_after: str | None = None) -> list[SSE]:
    """Every event until the server closes the stream (or after the first `stop_after`)."""
    seen = []
    async for event in events(response):
        seen.append(event)
        if stop_after is not None and event.event == stop_after:
            break
    return seen
