"""`video.analyze`: fetch metadata (YouTube Data API when a key is set); analyze (Gemini,
the YouTube URL as `fileData`, a JSON schema answer, validated); store. Analyses are kept
per video for a configurable time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from checkpoints import JSON, Operation, Outcome, Step, StepContext, StepRecord

from ._errors import ValidationFailed
from ._gemini import GeminiProvider
from ._kinds import CANCELLED_ERROR, Conclusion, first_error, retrying
from ._provider_http import error_from_response, error_from_transport
from ._providers import ProviderError
from ._retry import RetryPolicy
from ._tables import video_analyses

_ID = re.compile(r"^[A-Za-z0-9_-]{11}$")
_HOSTS = {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
          "youtu.be", "www.youtu.be"}


def video_id_of(value: str) -> str:
    """The 11-character id of a YouTube id or URL; 400 for anything else."""
    value = value.strip()
    if _ID.match(value):
        return value
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    if parts.scheme in ("http", "https") and host in _HOSTS:
        if host.endswith("youtu.be"):
            candidate = parts.path.strip("/").split("/")[0]
        elif parts.path == "/watch":
            candidate = parse_qs(parts.query).get("v", [""])[0]
        else:
            segments = parts.path.strip("/").split("/")
            candidate = segments[1] if len(segments) >= 2 and segments[0] in (
                "shorts", "embed", "live", "v") else ""
        if _ID.match(candidate):
            return candidate
    raise ValidationFailed("video must be an 11-character YouTube id or a YouTube video URL")


def _duration(iso: str) -> int | None:
    match = re.fullmatch(r"P(?:(\d+)D)?T?(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", iso or "")
    if not match:
        return None
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


@dataclass(frozen=True, slots=True)
class VideoKind:
    gemini: GeminiProvider
    policy: RetryPolicy
    http: httpx.AsyncClient
    youtube_api_key: str | None
    youtube_base_url: str
    engine: AsyncEngine
    cache_for: timedelta

    name: ClassVar[str] = "video.analyze"
    rerun_on_resume: ClassVar[tuple[str, ...]] = ()

    def plan(self, operation: Operation) -> list[Step]:
        return [Step("metadata", self._metadata), Step("analyze", self._analyze),
                Step("store", self._store)]

    async def _metadata(self, ctx: StepContext) -> JSON:
        video_id = ctx.operation.input["video_id"]
        video: dict[str, Any] = {"id": video_id,
                                 "url": f"https://www.youtube.com/watch?v={video_id}"}
        if self.youtube_api_key is None:
            return video

        async def fetch() -> Any:
            try:
                response = await self.http.get(
                    f"{self.youtube_base_url}/videos",
                    params={"part": "snippet,contentDetails", "id": video_id,
                            "key": self.youtube_api_key},
                    timeout=20,
                )
            except httpx.HTTPError as exc:
                raise error_from_transport("youtube", exc) from None
            if response.status_code >= 400:
                raise error_from_response("youtube", response)
            return response.json()

        answer = await retrying(self.policy, ctx, fetch)
        items = answer.get("items") or [] if isinstance(answer, dict) else []
        if not items:
            raise ProviderError("NOT_FOUND", "YouTube has no public video with this id",
                                retryable=False)
        snippet = items[0].get("snippet") or {}
        details = items[0].get("contentDetails") or {}
        video.update(title=snippet.get("title"), channel=snippet.get("channelTitle"),
                     duration_s=_duration(details.get("duration", "")))
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
            insert = (postgresql.insert if self.engine.dialect.name == "postgresql"
                      else sqlite.insert)
            statement = insert(video_analyses).values(
                video_id=ctx.outputs["metadata"]["id"], analytics=analyzed["analytics"],
                created_at=datetime.now(UTC),
            )
            async with self.engine.begin() as conn:
                await conn.execute(statement.on_conflict_do_update(
                    index_elements=["video_id"],
                    set_={"analytics": statement.excluded.analytics,
                          "created_at": statement.excluded.created_at},
                ))
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
