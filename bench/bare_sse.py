"""The floor `bench/streaming.py` measures the service's event streams against: a bare
sse-starlette app, glued by hand the minimal way, with nothing of the service around it.

    python bench/bare_sse.py --port P --events events.json

One Starlette route, `GET /v1/operations/{operation_id}/events`, follows one in-memory
"running operation": it sends the operation's already-recorded events (after
`Last-Event-ID`, read from `events.json`: a list of `{"seq", "type", "data"}`), then
waits for new ones, which never come while the bench runs (the service's operation is in
its long render step too). No authentication, database, rate limiter or middleware.
uvicorn runs it with the service's options (`python -m service serve`), on uvicorn's own
httptools protocol (the service's guarded protocol is part of what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


class RunningOperation:
    """An operation's event log in memory; followers wait for it to grow."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.grown = asyncio.Condition()

    async def follow(self, after: int) -> AsyncIterator[dict[str, Any]]:
        cursor = after
        while True:
            while cursor < len(self.events):
                cursor += 1
                yield self.events[cursor - 1]
            async with self.grown:
                await self.grown.wait()


def create_app(operation: RunningOperation) -> Starlette:
    async def events(request: Request) -> Response:
        after = int(request.headers.get("last-event-id") or 0)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            async for event in operation.follow(after):
                yield ServerSentEvent(data=json.dumps(event["data"], separators=(",", ":")),
                                      event=event["type"], id=str(event["seq"]))

        return EventSourceResponse(stream(), ping=15, send_timeout=30,
                                   headers={"Cache-Control": "no-store"})

    async def ready(_request: Request) -> Response:
        return Response("ok")

    return Starlette(routes=[
        Route("/v1/operations/{operation_id}/events", events),
        Route("/readyz", ready),
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--events", type=Path, required=True)
    args = parser.parse_args()
    operation = RunningOperation(json.loads(args.events.read_text()))
    # The options of `python -m service serve`, but uvicorn's own HTTP protocol.
    uvicorn.run(create_app(operation), host="127.0.0.1", port=args.port, http="httptools",
                timeout_keep_alive=5, timeout_graceful_shutdown=5, log_level="warning",
                proxy_headers=False)


if __name__ == "__main__":
    main()
