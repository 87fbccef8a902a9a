"""The HTTP endpoints of the contract."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

import ratelimit
from checkpoints import Operation, input_hash

from ._accounts import EDIT_CREDITS, Account, check_generation_allowed
from ._auth import Principal
from ._errors import (
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    PayloadTooLarge,
    ProviderNotConfigured,
    RunError,
    TierLimit,
    ValidationFailed,
)
from ._fetch import MAX_IMAGE_BYTES
from ._generate import generation_cost
from ._heatmap import upload_key
from ._http import event_cursor, idempotency_key, limited_by, wants_async, wants_stream
from ._images import image_format
from ._schemas import EditBody, GenerateBody, HeatmapBody, VideoAnalysisBody, parse
from ._state import Services
from ._thumbnails import load_thumbnail
from ._urls import check_public_urls
from ._video import video_id_of

#: Comment heartbeats on every stream at most this far apart (proxies idle out at ~60 s).
HEARTBEAT_S = 10.0


def services(request: Request) -> Services:
    state: Services = request.app.state.services
    return state


# -- creation ---------------------------------------------------------------------------

#: The rate-limit route of each operation kind.
ROUTE_OF_KIND: Mapping[str, str] = {
    "thumbnail.generate": "generate",
    "thumbnail.edit": "edit",
    "heatmap": "heatmap",
    "video.analyze": "video-analysis",
}


async def _replay(
    request: Request, svc: Services, user: str, key: str | None, kind: str,
    inputs: dict[str, Any],
) -> Response | None:
    """The answer for a repeated Idempotency-Key (no rate-limit units, no new run), or
    None for a new request. Another body under the same key → 422."""
    if key is None:
        return None
    existing = await svc.store.find_operation(user, key)
    if existing is None:
        return None
    if existing.input_hash != input_hash({"kind": kind, "input": inputs}):
        raise IdempotencyConflict(
            "this Idempotency-Key was used for a request with a different body"
        )
    await svc.operations.take_over_if_orphaned(existing)
    return await respond(request, svc, existing, after=0, principal=Principal(user),
                         headers=svc.limiter.policy_headers(ROUTE_OF_KIND[kind]))


async def _create(
    request: Request, svc: Services, user: str, *, kind: str, inputs: dict[str, Any],
    key: str | None, cost: int,
) -> Response:
    """Charge the rate limit, hold a concurrency slot, create the operation, start it."""
    route_id = ROUTE_OF_KIND[kind]
    decision = await ratelimit.enforce_rate_limit(route_id, request, user, cost=cost)
    try:
        slot = await svc.limiter.acquire_slot(route_id, user, ttl_s=svc.settings.lease_ttl_s)
    except ratelimit.RateLimitError:
        await svc.limiter.refund(route_id, user, decision.cost)  # nothing was done
        raise
    try:
        op, created = await svc.store.create_operation(
            user_id=user, kind=kind, input=inputs, idempotency_key=key
        )
    except BaseException:
        await slot.release()
        await svc.limiter.refund(route_id, user, decision.cost)  # nothing was created
        raise
    if created:
        svc.operations.start(op.id, slot=slot)
    else:
        await slot.release()  # a concurrent request with the same key created it
        await svc.limiter.refund(route_id, user, decision.cost)
    return await respond(request, svc, op, after=0, headers=decision.headers,
                         principal=Principal(user))


def _require_credits(account: Account, cost: int, what: str) -> None:
    """402 before anything is written when the balance cannot cover `cost`."""
    if account.credits_remaining < cost:
        raise InsufficientCredits(
            f"{what} needs {cost} credits; {account.credits_remaining} remain"
        )


@limited_by("generate")
async def create_thumbnails(request: Request) -> Response:
    svc = services(request)
    user = svc.auth.user(request).user_id
    body = parse(GenerateBody, await request.body())
    key = idempotency_key(request)
    inputs = body.model_dump(exclude_none=True)
    if (replayed := await _replay(request, svc, user, key, "thumbnail.generate", inputs)):
        return replayed
    account = await svc.accounts.get(user)
    check_generation_allowed(
        account.tier, resolution=body.resolution, aspect_ratio=body.aspect_ratio,
        variations=body.variations,
    )
    await check_public_urls(body.reference_images or (),
                            allow_private=svc.settings.allow_private_urls)
    cost = generation_cost(inputs)
    _require_credits(account, cost, "this generation")
    return await _create(request, svc, user, kind="thumbnail.generate", inputs=inputs,
                         key=key, cost=cost)


@limited_by("edit")
async def create_edit(request: Request) -> Response:
    svc = services(request)
    user = svc.auth.user(request).user_id
    body = parse(EditBody, await request.body())
    key = idempotency_key(request)
    source_id = request.path_params["thumbnail_id"]
    if len(source_id) > 36:
        raise NotFound("no such thumbnail")
    inputs = {"source_thumbnail_id": source_id, **body.model_dump(exclude_none=True)}
    if (replayed := await _replay(request, svc, user, key, "thumbnail.edit", inputs)):
        return replayed
    await load_thumbnail(svc.engine, user, source_id)  # 404 unless it is the caller's
    await check_public_urls(body.reference_images or (),
                            allow_private=svc.settings.allow_private_urls)
    _require_credits(await svc.accounts.get(user), EDIT_CREDITS, "an edit")
    return await _create(request, svc, user, kind="thumbnail.edit", inputs=inputs, key=key,
                         cost=EDIT_CREDITS)


@limited_by("heatmap")
async def create_heatmap(request: Request) -> Response:
    svc = services(request)
    user = svc.auth.user(request).user_id
    body = parse(HeatmapBody, await request.body())
    key = idempotency_key(request)
    account = await svc.accounts.get(user)
    if not account.tier.heatmaps:
        raise TierLimit(f"heatmaps need the advanced or pro tier; yours is {account.tier.name}")
    upload: bytes | None = None
    inputs: dict[str, Any]
    if body.thumbnail_id is not None:
        await load_thumbnail(svc.engine, user, body.thumbnail_id)
        inputs = {"thumbnail_id": body.thumbnail_id}
    elif body.image_url is not None:
        await check_public_urls([body.image_url],
                                allow_private=svc.settings.allow_private_urls)
        inputs = {"image_url": body.image_url}
    else:
        assert body.image_base64 is not None
        assert body.mime_type is not None
        upload = decode_image(body.image_base64, body.mime_type)
        image_key, digest = upload_key(upload, body.mime_type)
        inputs = {"image_key": image_key, "sha256": digest, "mime_type": body.mime_type}
    if (replayed := await _replay(request, svc, user, key, "heatmap", inputs)):
        return replayed
    if upload is not None:
        await svc.storage.put(inputs["image_key"], upload, inputs["mime_type"])
    return await _create(request, svc, user, kind="heatmap", inputs=inputs, key=key, cost=1)


def decode_image(encoded: str, mime_type: str) -> bytes:
    """The bytes of a base64 image: 413 over 10 MB decoded, 400 unless it is an image of
    the declared type."""
    if len(encoded) * 3 // 4 > MAX_IMAGE_BYTES + 3:
        raise PayloadTooLarge("the decoded image is larger than 10 MB")
    try:
        data = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ValidationFailed("image_base64 is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise PayloadTooLarge("the decoded image is larger than 10 MB")
    try:
        actual = image_format(data)
    except ValueError:
        raise ValidationFailed("image_base64 is not a PNG, JPEG or WebP image") from None
    if actual != mime_type:
        raise ValidationFailed(f"image_base64 is not {mime_type}")
    return data


@limited_by("video-analysis")
async def create_video_analysis(request: Request) -> Response:
    svc = services(request)
    user = svc.auth.user(request).user_id
    body = parse(VideoAnalysisBody, await request.body())
    key = idempotency_key(request)
    inputs = {"video_id": video_id_of(body.video)}
    if (replayed := await _replay(request, svc, user, key, "video.analyze", inputs)):
        return replayed
    account = await svc.accounts.get(user)
    if not account.tier.video_analysis:
        raise TierLimit(f"video analysis needs the pro tier; yours is {account.tier.name}")
    if "video.analyze" not in svc.operations.kinds:
        raise ProviderNotConfigured(
            "video analysis needs Gemini (GEMINI_API_KEY); the local provider cannot "
            "analyze videos"
        )
    return await _create(request, svc, user, kind="video.analyze", inputs=inputs, key=key,
                         cost=1)


async def respond(
    request: Request,
    svc: Services,
    op: Operation,
    *,
    after: int,
    principal: Principal,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The contract's negotiation: SSE, `Prefer: respond-async`, or JSON at the end."""
    headers = dict(headers or {})
    if wants_stream(request):
        return stream_response(svc, op.id, after, headers)
    if not wants_async(request):
        finished = await svc.operations.wait_until_finished(op.id, svc.settings.sync_wait_s)
        if finished is not None:
            if finished.status in ("succeeded", "partial"):
                return JSONResponse(
                    {"operation": await snapshot(svc, finished)}, headers=headers
                )
            error = RunError(dict(finished.error or {}))
            # The failed operation stays addressable (e.g. to resume it).
            error.headers.update(headers, Location=operation_url(svc, finished.id))
            raise error
        op = await svc.store.get_operation(op.id)
    return accepted(svc, op, principal, headers)


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
    events = f"{location}/events?token={token}"
    return JSONResponse(
        {"operation_id": op.id, "status": op.status,
         "links": {"self": location, "events": events}},
        status_code=202,
        headers={**headers, "Location": location},
    )


async def snapshot(svc: Services, op: Operation) -> dict[str, Any]:
    return await svc.presenter(op, await svc.store.get_steps(op.id))


def stream_response(
    svc: Services, operation_id: str, after: int, headers: Mapping[str, str]
) -> Response:
    async def events() -> AsyncIterator[ServerSentEvent]:
        svc.metrics.open_streams.inc()
        try:
            async for event in svc.operations.follow(operation_id, after):
                yield ServerSentEvent(
                    data=json.dumps(dict(event.data), separators=(",", ":")),
                    event=event.type,
                    id=str(event.seq),
                )
        finally:
            svc.metrics.open_streams.dec()

    return EventSourceResponse(
        events(),
        ping=HEARTBEAT_S,
        send_timeout=30,
        headers={**headers, "Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# -- operations -------------------------------------------------------------------------


async def _owned(request: Request, svc: Services, principal: Principal) -> Operation:
    operation_id = request.path_params["operation_id"]
    if len(operation_id) > 36:
        raise NotFound("no such operation")
    return await svc.store.get_operation(operation_id, user_id=principal.user_id)


@limited_by("operations")
async def get_operation(request: Request) -> Response:
    svc = services(request)
    principal = svc.auth.user(request)
    op = await _owned(request, svc, principal)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    return JSONResponse(await snapshot(svc, op), headers=decision.headers)


@limited_by("operations")
async def operation_events(request: Request) -> Response:
    svc = services(request)
    principal = svc.auth.user_or_events_token(request, request.path_params["operation_id"])
    op = await _owned(request, svc, principal)
    cursor = event_cursor(request) or 0
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    if op.is_finished and op.last_seq <= cursor:
        return Response(status_code=204, headers=decision.headers)
    await svc.operations.take_over_if_orphaned(op)
    return stream_response(svc, op.id, cursor, decision.headers)


@limited_by("operations")
async def resume_operation(request: Request) -> Response:
    svc = services(request)
    principal = svc.auth.user_or_events_token(request, request.path_params["operation_id"])
    op = await _owned(request, svc, principal)
    given = event_cursor(request)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    cursor = op.last_seq if given is None else given
    await svc.operations.resume(op)
    return await respond(request, svc, op, after=cursor, principal=principal,
                         headers=decision.headers)


@limited_by("operations")
async def cancel_operation(request: Request) -> Response:
    svc = services(request)
    principal = svc.auth.user(request)
    op = await _owned(request, svc, principal)
    decision = await ratelimit.enforce_rate_limit("operations", request, principal.user_id)
    if not op.is_finished:
        await svc.operations.cancel(op)
        finished = await svc.operations.wait_until_finished(op.id, 10)
        if finished is None:
            current = await svc.store.get_operation(op.id)
            return JSONResponse(await snapshot(svc, current), status_code=202,
                                headers=decision.headers)
        op = finished
    return JSONResponse(await snapshot(svc, op), headers=decision.headers)


@limited_by("operations")
async def get_account(request: Request) -> Response:
    svc = services(request)
    user = svc.auth.user(request).user_id
    decision = await ratelimit.enforce_rate_limit("operations", request, user)
    account = await svc.accounts.get(user)
    return JSONResponse(
        {"user_id": account.user_id, "tier": account.tier.name,
         "credits_remaining": account.credits_remaining},
        headers=decision.headers,
    )


async def dev_token(request: Request) -> Response:
    svc = services(request)
    return JSONResponse({"token": svc.auth.issue_user_token("demo-user", ttl_s=24 * 3600)})


# -- files, health, metrics -------------------------------------------------------------


async def get_file(request: Request) -> Response:
    svc = services(request)
    key = request.path_params["key"]
    storage = svc.local_storage
    if storage is None or not storage.verify(
        key, request.query_params.get("expires", ""), request.query_params.get("signature", "")
    ):
        raise NotFound("no such file, or its link has expired")
    data, content_type = await storage.get(key)
    return Response(data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=86400, immutable"})


STATIC = Path(__file__).parent / "static"


async def index(_request: Request) -> Response:
    """The studio page (plain HTML, CSS and JavaScript; no build step)."""
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(2):
            async with svc.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError):
        checks["database"] = "unreachable"
    if svc.settings.redis_url is None:
        checks["redis"] = "not configured"
    else:
        checks["redis"] = "ok" if await svc.limiter.ping() else "unreachable"
    ready = all(v in ("ok", "not configured") for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks},
                        status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    svc = services(request)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
