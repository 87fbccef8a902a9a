"""`video.analyze`: fetch metadata (YouTube Data API when a key is set); analyze (Gemini,
the YouTube URL as `fileData`, a JSON schema answer, validated); store. Analyses are kept
per video for a configurable time."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoints import JSON, Operation, Outcome, Step, StepContext, StepRecord

from .._errors import ProviderError
from .._rows import upsert
from ..providers import GeminiProvider, RetryPolicy, YouTube, watch_url
from ._kinds import CANCELLED_ERROR, Conclusion, first_error, retrying
from ._tables import video_analyses


@dataclass(frozen=True, slots=True)
class VideoKind:
    gemini: GeminiProvider
    policy: RetryPolicy
    #: The YouTube Data API, for metadata; None without a key.
    youtube: YouTube | None
    engine: AsyncEngine
    cache_for: timedelta

    name: ClassVar[str] = "video.analyze"
    rerun_on_resume: ClassVar[tuple[str, ...]] = ()

    def plan(self, operation: Operation) -> list[Step]:
        return [Step("metadata", self._metadata), Step("analyze", self._analyze),
                Step("store", self._store)]

    async def _metadata(self, ctx: StepContext) -> JSON:
        video_id = ctx.operation.input["video_id"]
        video: dict[str, Any] = {"id": video_id, "url": watch_url(video_id)}
        youtube = self.youtube
        if youtube is None:
            return {**video, "metadata": "skipped: no YouTube API key"}
        try:
            video.update(await retrying(self.policy, ctx, lambda: youtube.details(video_id)))
        except ProviderError as exc:
            # Gemini reads the video from its URL: metadata is a nice-to-have that YouTube's
            # quota must not take the analysis down with.
            if exc.code != "PROVIDER_RATE_LIMITED":
                raise
            return {**video, "metadata": f"skipped: {exc.message}"}
        return video

    async def _analyze(self, ctx: StepContext) -> JSON:
        video = ctx.outputs["metadata"]
        since = datetime.now(UTC) - self.cache_for
        async with self.engine.connect() as conn:
            cached = await conn.scalar(
                sa.select(video_analyses.c.analytics).where(
                    video_analyses.c.video_id == video["id"],
                    video_analyses.c.created_at >= since,
                )
            )
        if cached is not None:
            return {"analytics": cached, "cached": True}
        context = f"{ctx.operation.id} {ctx.step.key}"
        analytics = await retrying(
            self.policy, ctx, lambda: self.gemini.analyze_video(video["url"], context)
        )
        return {"analytics": analytics, "cached": False}

    async def _store(self, ctx: StepContext) -> JSON:
        analyzed = ctx.outputs["analyze"]
        if not analyzed["cached"]:
            row = {"video_id": ctx.outputs["metadata"]["id"],
                   "analytics": analyzed["analytics"], "created_at": datetime.now(UTC)}
            async with self.engine.begin() as conn:
                await conn.execute(upsert(conn.dialect, video_analyses, row, key=["video_id"],
                                          update=["analytics", "created_at"]))
        return {"stored": True}

    def conclude(
        self, operation: Operation, outcome: Outcome, steps: Mapping[str, StepRecord]
    ) -> Conclusion:
        if outcome.cancelled:
            return Conclusion("cancelled", None, CANCELLED_ERROR)
        if "store" not in outcome.outputs:
            return Conclusion("failed", None, first_error(outcome))
        return Conclusion("succeeded", {"analytics": outcome.outputs["analyze"]["analytics"],
                                        "video": outcome.outputs["metadata"]})
