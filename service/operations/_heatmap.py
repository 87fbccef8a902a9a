"""`heatmap`: load image; render heatmap; store. No credits (advanced and pro tiers).

Heatmaps are kept by image content: an identical image within the retention window is
answered from the stored heatmap without a provider call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoints import JSON, Operation, Outcome, Step, StepContext, StepRecord

from .._images import image_dimensions
from .._rows import upsert
from .._spec import format_of
from .._storage import Storage, content_type_of
from ..accounts import ThumbnailRows
from ..providers import EditRequest, ImageFetcher
from ._kinds import CANCELLED_ERROR, Conclusion, ProviderCalls, first_error
from ._tables import heatmaps

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def upload_key(data: bytes, mime_type: str) -> tuple[str, str]:
    """(content-addressed key, sha256) of an image given by a user."""
    digest = hashlib.sha256(data).hexdigest()
    return f"uploads/{digest}.{EXTENSIONS[mime_type]}", digest


@dataclass(frozen=True, slots=True)
class HeatmapKind:
    thumbnails: ThumbnailRows
    storage: Storage
    providers: ProviderCalls
    fetcher: ImageFetcher
    engine: AsyncEngine
    retention: timedelta

    name: ClassVar[str] = "heatmap"
    rerun_on_resume: ClassVar[tuple[str, ...]] = ()

    def plan(self, operation: Operation) -> list[Step]:
        return [Step("load", self._load), Step("render", self._render),
                Step("store", self._store)]

    async def _load(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        source = op.input
        if "image_key" in source:  # uploaded with the request
            return {"image_key": source["image_key"], "sha256": source["sha256"],
                    "mime_type": source["mime_type"]}
        if "thumbnail_id" in source:
            thumbnail = await self.thumbnails.load(op.user_id, source["thumbnail_id"])
            data, mime = await self.storage.get(thumbnail.image_key)
            return {"image_key": thumbnail.image_key,
                    "sha256": hashlib.sha256(data).hexdigest(), "mime_type": mime}
        fetched = await self.fetcher.fetch(source["image_url"])
        image_dimensions(fetched.data)  # an image, not just a content type
        key, digest = upload_key(fetched.data, fetched.mime_type)
        await self.storage.put(key, fetched.data, fetched.mime_type)
        return {"image_key": key, "sha256": digest, "mime_type": fetched.mime_type}

    async def _render(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        loaded = ctx.outputs["load"]
        provider_names = ",".join(p.name for p in self.providers.chain.providers)
        cached = await self._cached(loaded["sha256"], provider_names)
        if cached is not None:
            return {"heatmap_key": cached, "cached": True, "provider": provider_names}
        data, _ = await self.storage.get(loaded["image_key"])
        # The heatmap overlays its source 1:1: the same aspect ratio and size class.
        resolution, aspect_ratio = format_of(*image_dimensions(data))
        request = EditRequest(
            source=data, source_mime_type=loaded["mime_type"] or content_type_of(
                loaded["image_key"]),
            prompt="heatmap", resolution=resolution, aspect_ratio=aspect_ratio,
            context=f"{op.id} {ctx.step.key}",
        )
        image = await self.providers.run(ctx, lambda provider: provider.heatmap(request))
        key = f"heatmaps/{loaded['sha256']}/{image.provider}.png"
        await self.storage.put(key, image.data, image.mime_type)
        return {"heatmap_key": key, "cached": False, "provider": provider_names}

    async def _cached(self, digest: str, provider: str) -> str | None:
        since = datetime.now(UTC) - self.retention
        async with self.engine.connect() as conn:
            key = await conn.scalar(
                sa.select(heatmaps.c.heatmap_key).where(
                    heatmaps.c.image_sha256 == digest, heatmaps.c.provider == provider,
                    heatmaps.c.created_at >= since,
                )
            )
        return None if key is None else str(key)

    async def _store(self, ctx: StepContext) -> JSON:
        loaded, rendered = ctx.outputs["load"], ctx.outputs["render"]
        if not rendered["cached"]:
            row = {"image_sha256": loaded["sha256"], "provider": rendered["provider"],
                   "heatmap_key": rendered["heatmap_key"], "created_at": datetime.now(UTC)}
            async with self.engine.begin() as conn:
                await conn.execute(upsert(conn.dialect, heatmaps, row,
                                          key=["image_sha256", "provider"],
                                          update=["heatmap_key", "created_at"]))
        return {"heatmap_key": rendered["heatmap_key"], "mime_type": "image/png"}

    def conclude(
        self, operation: Operation, outcome: Outcome, steps: Mapping[str, StepRecord]
    ) -> Conclusion:
        if outcome.cancelled:
            return Conclusion("cancelled", None, CANCELLED_ERROR)
        stored = outcome.outputs.get("store")
        if stored is None:
            return Conclusion("failed", None, first_error(outcome))
        return Conclusion("succeeded", {"heatmap_key": stored["heatmap_key"],
                                        "mime_type": stored["mime_type"]})
