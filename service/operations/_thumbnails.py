"""Thumbnail rows and images shared by the generate and edit operations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from .._errors import NotFound
from .._images import make_variants
from .._storage import Storage, thumbnail_keys
from ._rows import upsert
from ._tables import thumbnails

THUMBNAIL_NAMESPACE = uuid.UUID("6f1c3d5e-2a7b-4c1e-9e8f-5b0a7d3c2e19")


def thumbnail_id(operation_id: str, part: str) -> str:
    """The deterministic id of the thumbnail an operation makes (`part`: e.g. `v2`)."""
    return str(uuid.uuid5(THUMBNAIL_NAMESPACE, f"{operation_id}/{part}"))


@dataclass(frozen=True, slots=True)
class Thumbnail:
    id: str
    title: str
    image_key: str
    resolution: str
    aspect_ratio: str
    width: int
    height: int


async def load_thumbnail(engine: AsyncEngine, user_id: str, thumbnail_id: str) -> Thumbnail:
    """A thumbnail of this user; 404 for an unknown id or someone else's."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(thumbnails).where(
                    thumbnails.c.id == thumbnail_id, thumbnails.c.user_id == user_id
                )
            )
        ).first()
    if row is None:
        raise NotFound("no such thumbnail")
    return Thumbnail(row.id, row.title, row.image_key, row.resolution, row.aspect_ratio,
                     row.width, row.height)


Sign = Callable[[str], Awaitable[str]]


async def store_variants(storage: Storage, sign: Sign, user_id: str, thumb_id: str,
                         image_key: str) -> dict[str, str]:
    """The 400w and 800w JPEGs of a stored image; returns their keys, and a signed URL of
    the 400w one so that a page can show the thumbnail as soon as it exists."""
    keys = thumbnail_keys(user_id, thumb_id)
    original, _ = await storage.get(image_key)
    variants = await asyncio.to_thread(make_variants, original, (400, 800))
    await storage.put(keys["image_400w"], variants[400], "image/jpeg")
    await storage.put(keys["image_800w"], variants[800], "image/jpeg")
    return {"image_400w_key": keys["image_400w"], "image_800w_key": keys["image_800w"],
            "image_400w_url": await sign(keys["image_400w"])}


async def record_thumbnail(engine: AsyncEngine, **row: Any) -> None:
    """Insert the thumbnail row once (a retried step inserts nothing more)."""
    async with engine.begin() as conn:
        await conn.execute(upsert(conn.dialect, thumbnails, {"created_at": datetime.now(UTC),
                                                             **row}, key=["id"]))


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
