"""Thumbnail ids, images and results shared by the generate and edit operations (their
rows belong to the books: `service.accounts`)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from PIL import Image

from checkpoints import Operation, StepContext

from .._errors import NotFound, StorageUnavailable
from .._images import make_variants
from .._storage import Storage, thumbnail_keys
from ..accounts import AccountsBackend, Charge
from ..providers import GeneratedImage

log = logging.getLogger("service.operations")

THUMBNAIL_NAMESPACE = uuid.UUID("6f1c3d5e-2a7b-4c1e-9e8f-5b0a7d3c2e19")
#: Scratch keys of decoded renders (`store_render`).
_DECODED = "decoded:"


def thumbnail_id(operation_id: str, part: str) -> str:
    """The deterministic id of the thumbnail an operation makes (`part`: e.g. `v2`)."""
    return str(uuid.uuid5(THUMBNAIL_NAMESPACE, f"{operation_id}/{part}"))


Sign = Callable[[str], Awaitable[str]]


async def discard_unrendered(storage: Storage, ctx: StepContext,
                             renders: Mapping[str, str]) -> None:
    """Remove what an earlier owner may have stored for renders that never completed
    (`renders`: thumbnail part, e.g. `v2`, → its render step's key). An owner killed
    between storing a render and its checkpoint leaves the object behind, and once the
    run ends without that render (cancelled, or failed) no row will ever point at it.
    Completed renders keep their objects: a resume may still need them. Best effort: a
    store that fails now leaves them (logged), and never holds up the settlement."""
    op = ctx.operation
    keys = [key for part, step in renders.items() if step not in ctx.outputs
            for key in thumbnail_keys(op.user_id, thumbnail_id(op.id, part)).values()]
    if keys:
        try:
            await storage.delete(keys)
        except (StorageUnavailable, NotFound) as exc:
            log.warning("objects of unfinished renders not removed: %s", exc,
                        extra={"operation_id": op.id})


async def store_render(storage: Storage, ctx: StepContext, image_key: str,
                       image: GeneratedImage) -> None:
    """Store a provider's image, and leave the decoding its check made for this run's
    variants step (see `store_variants`)."""
    await storage.put(image_key, image.data, image.mime_type)
    if image.decoded is not None:
        ctx.scratch[_DECODED + image_key] = image.decoded


async def store_variants(storage: Storage, sign: Sign, ctx: StepContext, thumb_id: str,
                         image_key: str) -> dict[str, str]:
    """The 400w and 800w JPEGs of a stored image; returns their keys, and a signed URL of
    the 400w one so that a page can show the thumbnail as soon as it exists. The image
    is decoded from the store unless this turn of the run rendered it and kept it
    decoded (`store_render`)."""
    keys = thumbnail_keys(ctx.operation.user_id, thumb_id)
    source: bytes | Image.Image | None = ctx.scratch.pop(_DECODED + image_key, None)
    if source is None:
        source, _ = await storage.get(image_key)
    variants = await asyncio.to_thread(make_variants, source, (400, 800))
    # Independent objects: stored side by side (each write is atomic and idempotent).
    await asyncio.gather(*(storage.put(keys[f"image_{width}w"], variants[width], "image/jpeg")
                           for width in (400, 800)))
    return {"image_400w_key": keys["image_400w"], "image_800w_key": keys["image_800w"],
            "image_400w_url": await sign(keys["image_400w"])}


def delivered(outputs: dict[str, Any], part: str) -> dict[str, Any] | None:
    """The result entry of one thumbnail when its render, variants and record completed."""
    prefix = f"{part}/" if part else ""
    if f"{prefix}record" not in outputs:
        return None
    rendered = outputs[f"{prefix}render"]
    variants = outputs[f"{prefix}variants"]
    return {
        "id": outputs[f"{prefix}record"]["thumbnail_id"],
        "image_key": rendered["image_key"],
        "image_400w_key": variants["image_400w_key"],
        "image_800w_key": variants["image_800w_key"],
        "width": rendered["width"],
        "height": rendered["height"],
    }


async def reserve(accounts: AccountsBackend, operation: Operation, target: int,
                  charge: Charge) -> tuple[int, bool]:
    """Set the operation's charge to `target` credits: the balance after, and whether the
    user's tier marks their thumbnails as watermarked, read beside the charge (a read
    that need not wait for it)."""
    balance, account = await asyncio.gather(
        accounts.set_charge(operation.user_id, operation.id, target, charge),
        accounts.get(operation.user_id),
    )
    return balance, account.tier.has_watermark


async def is_watermarked(accounts: AccountsBackend, ctx: StepContext) -> bool:
    """Whether the user's tier marks their thumbnails as watermarked: as `reserve` found it
    (once per operation, not once per recorded thumbnail), else read now."""
    reserved = ctx.outputs.get("reserve") or {}
    if "has_watermark" in reserved:
        return bool(reserved["has_watermark"])
    return (await accounts.get(ctx.operation.user_id)).tier.has_watermark
