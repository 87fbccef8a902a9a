"""The four creation endpoints. Each follows one path (DESIGN, "How a request flows"):
auth, body, Idempotency-Key replay, tier gates, network checks, credits; then the rate
limit, a concurrency slot, the operation, its run — and nothing is written for a request
that is refused."""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

import ratelimit
from checkpoints import Operation, input_hash

from .._errors import (
    IdempotencyConflict,
    InsufficientCredits,
    NotFound,
    PayloadTooLarge,
    ProviderNotConfigured,
    TierLimit,
    ValidationFailed,
)
from .._images import ImageTooLarge, image_format, verify_image
from ..accounts import EDIT_CREDITS, Account, check_generation_allowed
from ..operations import ROUTE_OF_KIND, generation_cost, upload_key
from ..providers import MAX_IMAGE_BYTES, check_public_urls, image_model, video_id_of
from ._auth import Principal
from ._bodies import EditBody, GenerateBody, HeatmapBody, RequestBody, VideoAnalysisBody, parse
from ._negotiation import idempotency_key, path_id
from ._respond import holds_connection, respond, take_stream_slot
from ._route_limits import limited_by
from ._services import Services, services_of

B = TypeVar("B", bound=RequestBody)
#: How long a request refused by the limiter looks for its same-key twin's operation.
TWIN_CHECKS = 5
TWIN_CHECK_INTERVAL_S = 0.05
#: Work that must wait until the request has passed the rate limit (e.g. storing an upload).
Prepare = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Creation:
    """A creation request, authenticated and parsed."""

    request: Request
    svc: Services
    user: str
    key: str | None

    async def replay(
        self, kind: str, inputs: Mapping[str, Any], stream: ratelimit.Slot | None = None
    ) -> Response | None:
        """The answer for a repeated Idempotency-Key (no rate-limit units, no new run),
        or None for a new request. Another body under the same key → 422."""
        return await self._replayed(kind, inputs, await self._existing(), stream)

    async def replay_or_account(
        self, kind: str, inputs: Mapping[str, Any]
    ) -> tuple[Response | None, Account]:
        """`replay`, and the caller's account, read beside the Idempotency-Key's lookup:
        a new request needs both."""
        existing, account = await asyncio.gather(self._existing(),
                                                 self.svc.accounts.get(self.user))
        return await self._replayed(kind, inputs, existing, None), account

    async def _existing(self) -> Operation | None:
        """The caller's operation of this request's Idempotency-Key, if any."""
        if self.key is None:
            return None
        return await self.svc.store.find_operation(self.user, self.key)

    async def _replayed(
        self, kind: str, inputs: Mapping[str, Any], existing: Operation | None,
        stream: ratelimit.Slot | None,
    ) -> Response | None:
        if existing is None:
            return None
        if existing.input_hash != input_hash({"kind": kind, "input": dict(inputs)}):
            raise IdempotencyConflict(
                "this Idempotency-Key was used for a request with a different body"
            )
        await self.svc.operations.take_over_if_orphaned(existing)
        return await respond(self.request, existing, after=0, principal=Principal(self.user),
                             headers=self.svc.limiter.policy_headers(ROUTE_OF_KIND[kind]),
                             stream_slot=stream)

    async def _created_meanwhile(
        self, kind: str, inputs: Mapping[str, Any], stream: ratelimit.Slot | None
    ) -> Response | None:
        """A refused request with an Idempotency-Key whose twin, sent at the same time, got
        through: the twin's operation (it is the same request), not a 429. The twin creates
        it moments after its own rate-limit decision, so look for a short while."""
        if self.key is None:
            return None
        for _ in range(TWIN_CHECKS):
            if (followed := await self.replay(kind, inputs, stream)) is not None:
                return followed
            await asyncio.sleep(TWIN_CHECK_INTERVAL_S)
        return None

    async def start(
        self, kind: str, inputs: Mapping[str, Any], *, cost: int, prepare: Prepare | None = None
    ) -> Response:
        """Charge the rate limit, hold a concurrency slot, `prepare`, create the operation
        and start its run; every unit and slot is given back when nothing was created. A
        stream is counted before anything is written (429 past the user's streams)."""
        stream = None
        if holds_connection(self.request):
            stream = await take_stream_slot(self.svc, self.user)
        try:
            return await self._start(kind, inputs, cost=cost, prepare=prepare, stream=stream)
        except BaseException:
            if stream is not None:
                await stream.release()
            raise

    async def _start(
        self, kind: str, inputs: Mapping[str, Any], *, cost: int, prepare: Prepare | None,
        stream: ratelimit.Slot | None,
    ) -> Response:
        svc, route_id = self.svc, ROUTE_OF_KIND[kind]
        try:
            decision = await ratelimit.enforce_rate_limit(route_id, self.request, self.user,
                                                          cost=cost)
        except ratelimit.RateLimitExceeded:
            if (followed := await self._created_meanwhile(kind, inputs, stream)) is not None:
                return followed
            raise
        try:
            slot = await svc.limiter.acquire_slot(route_id, self.user,
                                                  ttl_s=svc.settings.lease_ttl_s)
        except ratelimit.RateLimitError as exc:
            await svc.limiter.refund(route_id, self.user, decision.cost)
            if (isinstance(exc, ratelimit.RateLimitExceeded)
                    and (followed := await self._created_meanwhile(kind, inputs, stream))):
                return followed
            raise
        try:
            if prepare is not None:
                await prepare()
            op, created = await svc.operations.create(
                user_id=self.user, kind=kind, input=inputs, idempotency_key=self.key
            )
        except BaseException:
            await slot.release()
            await svc.limiter.refund(route_id, self.user, decision.cost)
            raise
        if created:
            svc.operations.start(op.id, slot=slot, created=op)
        else:
            await slot.release()  # a concurrent request with the same key created it
            await svc.limiter.refund(route_id, self.user, decision.cost)
        return await respond(self.request, op, after=0, headers=decision.headers,
                             principal=Principal(self.user), stream_slot=stream)


async def _begin(request: Request, model: type[B]) -> tuple[Creation, B]:
    """Authenticate, parse the body and the Idempotency-Key (401/400/413 before anything)."""
    svc = services_of(request)
    user = (await svc.auth.user(request)).user_id
    body = parse(model, await request.body())
    return Creation(request, svc, user, idempotency_key(request)), body


def _require_provider(svc: Services, model: str | None) -> None:
    """503 before anything is written when the chosen model's provider is not set up
    (the offline `local` provider stands in for any model)."""
    if model is None:
        return
    provider = image_model(model).provider
    configured = svc.settings.image_providers
    if provider not in configured and "local" not in configured:
        raise ProviderNotConfigured(
            f"{model} needs the {provider} provider; IMAGE_PROVIDERS has "
            f"{', '.join(configured)}"
        )


def _require_uuid(value: str, name: str) -> None:
    """ViewBait's ids are UUIDs (400 otherwise, before anything is written)."""
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValidationFailed(f"{name} must be a UUID") from None


def _require_credits(account: Account, cost: int, what: str) -> None:
    """402 before anything is written when the balance cannot cover `cost`."""
    if account.credits_remaining < cost:
        raise InsufficientCredits(
            f"{what} needs {cost} credits; {account.credits_remaining} remain"
        )


@limited_by("generate")
async def create_thumbnails(request: Request) -> Response:
    creation, body = await _begin(request, GenerateBody)
    inputs = body.inputs()
    replayed, account = await creation.replay_or_account("thumbnail.generate", inputs)
    if replayed is not None:
        return replayed
    svc = creation.svc
    check_generation_allowed(account.tier, resolution=body.resolution,
                             aspect_ratio=body.aspect_ratio, variations=body.variations)
    if svc.settings.is_viewbait and body.project_id is not None:
        _require_uuid(body.project_id, "project_id")
    _require_provider(svc, body.model)
    await check_public_urls(inputs.get("reference_images", ()),
                            allow_private=svc.settings.allow_private_urls)
    prices = await svc.accounts.prices()
    _require_credits(account, prices.generation(body.resolution, body.variations),
                     "this generation")
    return await creation.start("thumbnail.generate", inputs, cost=generation_cost(inputs))


@limited_by("edit")
async def create_edit(request: Request) -> Response:
    creation, body = await _begin(request, EditBody)
    source_id = path_id(request, "thumbnail_id")
    if source_id is None:
        raise NotFound("no such thumbnail")
    if body.thumbnail_id is not None and body.thumbnail_id != source_id:
        raise ValidationFailed("thumbnail_id differs from the thumbnail of the path")
    inputs = {"source_thumbnail_id": source_id,
              **body.model_dump(exclude_none=True, exclude={"thumbnail_id"})}
    replayed, account = await creation.replay_or_account("thumbnail.edit", inputs)
    if replayed is not None:
        return replayed
    svc = creation.svc
    await svc.thumbnails.load(creation.user, source_id)  # 404 unless the caller's
    _require_provider(svc, body.model)
    await check_public_urls(body.reference_images or (),
                            allow_private=svc.settings.allow_private_urls)
    prices = await svc.accounts.prices()
    _require_credits(account, prices.edit_credits, "an edit")
    return await creation.start("thumbnail.edit", inputs, cost=EDIT_CREDITS)


@limited_by("heatmap")
async def create_heatmap(request: Request) -> Response:
    creation, body = await _begin(request, HeatmapBody)
    svc = creation.svc
    account = await svc.accounts.get(creation.user)
    if not account.tier.heatmaps:
        raise TierLimit(f"heatmaps need the advanced or pro tier; yours is {account.tier.name}")
    upload: bytes | None = None
    inputs: dict[str, Any]
    if body.thumbnail_id is not None:
        # 404 unless the caller's; with an inline image it is only this check.
        await svc.thumbnails.load(creation.user, body.thumbnail_id)
    if body.image_base64 is None and body.thumbnail_id is not None:
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
    if (replayed := await creation.replay("heatmap", inputs)):
        return replayed

    async def store_upload() -> None:
        if upload is not None:
            # Decoding is CPU work: off the event loop, and only once the rate limit and
            # a concurrency slot have been granted.
            try:
                await asyncio.to_thread(verify_image, upload)
            except ValueError:
                raise ValidationFailed("image_base64 does not decode as an image") from None
            await svc.storage.put(inputs["image_key"], upload, inputs["mime_type"])

    return await creation.start("heatmap", inputs, cost=1, prepare=store_upload)


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
        actual = image_format(data)  # the header only: cheap, before the rate limit
    except ImageTooLarge as exc:
        raise ValidationFailed(f"image_base64: {exc}") from None
    except ValueError:
        raise ValidationFailed("image_base64 is not a PNG, JPEG or WebP image") from None
    if actual != mime_type:
        raise ValidationFailed(f"image_base64 is not {mime_type}")
    return data


@limited_by("video-analysis")
async def create_video_analysis(request: Request) -> Response:
    creation, body = await _begin(request, VideoAnalysisBody)
    inputs = {"video_id": video_id_of(body.video)}
    replayed, account = await creation.replay_or_account("video.analyze", inputs)
    if replayed is not None:
        return replayed
    svc = creation.svc
    if not account.tier.video_analysis:
        raise TierLimit(f"video analysis needs the pro tier; yours is {account.tier.name}")
    if "video.analyze" not in svc.operations.kinds:
        raise ProviderNotConfigured(
            "video analysis needs Gemini (GEMINI_API_KEY); the local provider cannot "
            "analyze videos"
        )
    return await creation.start("video.analyze", inputs, cost=1)
