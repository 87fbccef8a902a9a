"""How an operation is answered: a stream of its events, 202 with links, or JSON once it
has finished (the contract's negotiation)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import checkpoints
import ratelimit
from checkpoints import Operation, StepRecord

from .._errors import ErrorInfo, RunError
from ..operations import held
from ._auth import Principal
from ._negotiation import wants_async, wants_stream
from ._responses import Accepted, Links
from ._services import Services, services_of

log = logging.getLogger("service.http")

#: A send that blocks this long (a client that stopped reading) ends the stream.
SEND_TIMEOUT_S = 30


async def respond(
    request: Request,
    op: Operation,
    *,
    after: int,
    principal: Principal,
    headers: Mapping[str, str] | None = None,
    stream_slot: ratelimit.Slot | None = None,
) -> Response:
    """The contract's negotiation: SSE, `Prefer: respond-async`, or JSON at the end.
    `stream_slot`: the user's stream slot, when the caller already holds it."""
    svc = services_of(request)
    headers = dict(headers or {})
    if wants_stream(request):
        return await stream_response(svc, op.id, after, headers, principal.user_id,
                                     slot=stream_slot)
    if not wants_async(request):
        async with held(stream_slot or await take_stream_slot(svc, principal.user_id)):
            ended = await svc.operations.wait_until_finished(op.id, svc.settings.sync_wait_s)
        if ended is not None:
            finished = ended.operation
            if finished.status in ("succeeded", "partial"):
                return JSONResponse(
                    {"operation": await snapshot(svc, finished, ended.steps)}, headers=headers
                )
            info = ErrorInfo.of_record(finished.error)
            # The failed operation stays addressable (e.g. to resume it).
            raise RunError(dataclasses.replace(
                info, headers={**headers, "Location": operation_url(svc, finished.id)}
            ))
        op = await svc.store.get_operation(op.id)
    return accepted(svc, op, principal, headers)


def holds_connection(request: Request) -> bool:
    """Whether the answer keeps the connection open while the run goes on (a stream, or
    JSON that waits for the end): such answers count against the user's streams."""
    return wants_stream(request) or not wants_async(request)


def operation_url(svc: Services, operation_id: str) -> str:
    """The operation's URL: relative, or under PUBLIC_BASE_URL when it is set."""
    return f"{svc.settings.public_base_url or ''}/v1/operations/{operation_id}"


def accepted(
    svc: Services, op: Operation, principal: Principal, headers: Mapping[str, str]
) -> JSONResponse:
    """202 with the operation's links; `links.events` carries a token of its own, so it
    works as is in `new EventSource(url)`."""
    location = operation_url(svc, op.id)
    token = svc.auth.issue_events_token(principal.user_id, op.id)
    body = Accepted(operation_id=op.id, status=op.status,
                    links=Links(self=location, events=f"{location}/events?token={token}"))
    return JSONResponse(body.model_dump(), status_code=202,
                        headers={**headers, "Location": location})


async def snapshot(
    svc: Services, op: Operation, steps: Sequence[StepRecord] | None = None
) -> dict[str, Any]:
    """The operation's snapshot, with freshly signed URLs; its step records are read
    unless given."""
    if steps is None:
        steps = await svc.store.get_steps(op.id)
    return await svc.snapshots.of(op, steps)


async def take_stream_slot(svc: Services, user_id: str) -> ratelimit.Slot:
    """One of the user's `streams` slots (429 when all are held, on any instance): an event
    stream, or a JSON answer that waits for its run, holds one while the connection is
    open."""
    return await svc.limiter.acquire_slot("streams", user_id, ttl_s=svc.settings.lease_ttl_s)


async def stream_response(
    svc: Services, operation_id: str, after: int, headers: Mapping[str, str], user_id: str,
    *, slot: ratelimit.Slot | None = None,
) -> Response:
    """The operation's events after `after` as Server-Sent Events, live until its final
    terminal event; the run itself belongs to the process, not to this stream. A stream
    holds one of the user's `streams` slots for as long as it is open (`slot`, or one
    taken here)."""
    slot = slot or await take_stream_slot(svc, user_id)

    async def events() -> AsyncIterator[bytes]:
        svc.metrics.open_streams.inc()
        try:
            async with held(slot):
                async for batch in svc.operations.follow_batches(operation_id, after):
                    yield svc.encoded_events.of(operation_id, batch)
        except Exception as exc:
            if not checkpoints.is_connection_failure(exc):
                raise
            # Too late for a 503: end the stream; the client reconnects with its
            # Last-Event-ID (EventSource does) and is answered 503 until the database is
            # back, then the log goes on where it left off.
            log.warning("event stream ended: the database is unavailable",
                        extra={"operation_id": operation_id})
        finally:
            svc.metrics.open_streams.dec()

    return EventSourceResponse(
        events(),
        ping=svc.settings.heartbeat_s,
        send_timeout=SEND_TIMEOUT_S,
        headers={**headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Also when the stream never starts (HEAD, a client gone before the first event).
        background=BackgroundTask(slot.release),
    )
