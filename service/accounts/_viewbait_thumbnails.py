"""Thumbnails as rows of ViewBait's `public.thumbnails`: what the service delivers appears
in ViewBait's gallery, and edits and heatmaps work on the thumbnails ViewBait made."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from .._errors import NotFound
from .._storage import thumbnail_keys
from ._protocol import NewThumbnail, Thumbnail
from ._viewbait_tables import thumbnails

#: Object keys in the URLs rows hold: Supabase Storage's (signed, public or
#: authenticated) and this service's signed local files.
_OBJECT_PATH = re.compile(r"/storage/v1/object/(?:sign|public|authenticated)/(.+)$|/v1/files/(.+)$")

Sign = Callable[[str], Awaitable[str]]


class ViewBaitThumbnails:
    """Rows of `public.thumbnails`, with signed URLs of the images from `sign`."""

    def __init__(self, engine: AsyncEngine, sign: Sign) -> None:
        self._engine = engine
        self._sign = sign

    async def load(self, user_id: str, thumbnail_id: str) -> Thumbnail:
        try:
            user, thumb = str(uuid.UUID(user_id)), str(uuid.UUID(thumbnail_id))
        except ValueError:
            raise NotFound("no such thumbnail") from None
        async with self._engine.connect() as conn:
            row = (await conn.execute(
                sa.select(thumbnails.c.title, thumbnails.c.image_url, thumbnails.c.resolution,
                          thumbnails.c.aspect_ratio)
                .where(thumbnails.c.id == thumb, thumbnails.c.user_id == user)
            )).first()
        if row is None:
            raise NotFound("no such thumbnail")
        return Thumbnail(thumb, row.title or "", image_key_of(row.image_url, user, thumb),
                         row.resolution, row.aspect_ratio)

    async def record(self, thumbnail: NewThumbnail) -> None:
        row = {
            "id": thumbnail.id, "user_id": thumbnail.user_id,
            "project_id": thumbnail.project_id, "title": thumbnail.title,
            "image_url": await self._sign(thumbnail.image_key),
            "thumbnail_400w_url": await self._sign(thumbnail.image_400w_key),
            "thumbnail_800w_url": await self._sign(thumbnail.image_800w_key),
            "style": thumbnail.style, "palette": thumbnail.palette,
            "emotion": thumbnail.emotion, "aspect_ratio": thumbnail.aspect_ratio,
            "resolution": thumbnail.resolution, "has_watermark": thumbnail.has_watermark,
            "liked": False, "is_public": False, "created_at": datetime.now(UTC),
        }
        async with self._engine.begin() as conn:
            await conn.execute(
                postgresql.insert(thumbnails).values(**row).on_conflict_do_nothing(
                    index_elements=["id"])
            )


def image_key_of(image_url: str | None, user_id: str, thumbnail_id: str) -> str:
    """The object key of a row's image: from its URL when that names an object of this
    user's, else ViewBait's layout (`thumbnails/{user}/{id}/thumbnail.png`). A row's URL
    never opens another user's object."""
    default = thumbnail_keys(user_id, thumbnail_id)["image"]
    match = _OBJECT_PATH.search(urlsplit(image_url or "").path)
    if match is None:
        return default
    key = unquote(match.group(1) or match.group(2))
    owned = key.startswith(default.rsplit("/", 2)[0] + "/") and ".." not in key.split("/")
    return key if owned else default
