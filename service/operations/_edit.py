"""`thumbnail.edit`: load source; reserve; render; variants; record (a new thumbnail row);
settle. The edit's price (2 credits by default) is charged once, refunded when nothing
was delivered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from checkpoints import JSON, Operation, Outcome, Step, StepContext, StepRecord

from .._images import image_dimensions
from .._spec import ASPECT_RATIOS, RESOLUTIONS, format_of
from .._storage import Storage, content_type_of, thumbnail_keys
from ..accounts import AccountsBackend, Charge, NewThumbnail, ThumbnailRows
from ..providers import EditRequest
from ._kinds import CANCELLED_ERROR, Conclusion, ProviderCalls, first_error
from ._thumbnails import (
    Sign,
    delivered,
    discard_unrendered,
    is_watermarked,
    reserve,
    store_render,
    store_variants,
    thumbnail_id,
)


@dataclass(frozen=True, slots=True)
class EditKind:
    accounts: AccountsBackend
    thumbnails: ThumbnailRows
    storage: Storage
    providers: ProviderCalls
    sign: Sign

    name: ClassVar[str] = "thumbnail.edit"
    rerun_on_resume: ClassVar[tuple[str, ...]] = ("reserve", "settle")

    def plan(self, operation: Operation) -> list[Step]:
        return [
            Step("load", self._load),
            Step("reserve", self._reserve),
            # One group: a render that completed is finished and delivered even after a
            # cancel, and a failed render does not keep settle from refunding.
            Step("render", self._render, group="edit"),
            Step("variants", self._variants, group="edit"),
            Step("record", self._record, group="edit"),
            Step("settle", self._settle, always=True),
        ]

    async def _load(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        source = await self.thumbnails.load(op.user_id, op.input["source_thumbnail_id"])
        resolution, aspect_ratio = source.resolution, source.aspect_ratio
        if resolution not in RESOLUTIONS or aspect_ratio not in ASPECT_RATIOS:
            # A row that does not say (ViewBait's may not): the image tells.
            data, _ = await self.storage.get(source.image_key)
            resolution, aspect_ratio = format_of(*image_dimensions(data))
        return {"image_key": source.image_key, "title": source.title,
                "resolution": resolution, "aspect_ratio": aspect_ratio}

    @staticmethod
    def _charge(ctx: StepContext) -> Charge:
        """How the edit's credits read in a credit history."""
        title = (ctx.outputs.get("load") or {}).get("title") or "a thumbnail"
        return Charge("edit", f"Thumbnail edit: “{title[:80]}”",
                      thumbnail_id=ctx.operation.input["source_thumbnail_id"])

    async def _reserve(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        cost = (await self.accounts.prices()).edit_credits
        balance, watermarked = await reserve(self.accounts, op, cost, self._charge(ctx))
        return {"charged": cost, "credits_remaining": balance, "has_watermark": watermarked}

    async def _render(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        source = ctx.outputs["load"]
        data, mime = await self.storage.get(source["image_key"])
        request = EditRequest(
            source=data, source_mime_type=mime or content_type_of(source["image_key"]),
            prompt=op.input["prompt"], resolution=source["resolution"],
            aspect_ratio=source["aspect_ratio"],
            reference_images=tuple(op.input.get("reference_images") or ()),
            model=op.input.get("model"), context=f"{op.id} {ctx.step.key}",
        )
        image = await self.providers.run(ctx, lambda provider: provider.edit(request),
                                         model=request.model)
        keys = thumbnail_keys(op.user_id, thumbnail_id(op.id, "edit"))
        await store_render(self.storage, ctx, keys["image"], image)
        return {"image_key": keys["image"], "width": image.width, "height": image.height,
                "provider": image.provider, "mime_type": image.mime_type}

    async def _variants(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        return await store_variants(
            self.storage, self.sign, ctx, thumbnail_id(op.id, "edit"),
            ctx.outputs["render"]["image_key"],
        )

    async def _record(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        source, rendered, variants = (ctx.outputs[k] for k in ("load", "render", "variants"))
        thumb = thumbnail_id(op.id, "edit")
        watermarked = await is_watermarked(self.accounts, ctx)
        await self.thumbnails.record(NewThumbnail(
            id=thumb, user_id=op.user_id, operation_id=op.id,
            title=op.input.get("title") or source["title"], image_key=rendered["image_key"],
            image_400w_key=variants["image_400w_key"],
            image_800w_key=variants["image_800w_key"], width=rendered["width"],
            height=rendered["height"], resolution=source["resolution"],
            aspect_ratio=source["aspect_ratio"], provider=rendered["provider"],
            has_watermark=watermarked,
        ))
        return {"thumbnail_id": thumb}

    async def _settle(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        used = 0
        if "record" in ctx.outputs:
            reserved = ctx.outputs.get("reserve") or {}
            used = (reserved["charged"] if "charged" in reserved
                    else (await self.accounts.prices()).edit_credits)
        balance = await self.accounts.set_charge(op.user_id, op.id, used, self._charge(ctx))
        await discard_unrendered(self.storage, ctx, {"edit": "render"})
        return {"credits_used": used, "credits_remaining": balance}

    def conclude(
        self, operation: Operation, outcome: Outcome, steps: Mapping[str, StepRecord]
    ) -> Conclusion:
        thumbnail = delivered(dict(outcome.outputs), "")
        settled = outcome.outputs.get("settle")
        result = None
        if settled is not None:
            result = {
                "thumbnails": [thumbnail] if thumbnail else [],
                "source_thumbnail_id": operation.input["source_thumbnail_id"],
                "credits_used": settled["credits_used"],
                "credits_remaining": settled["credits_remaining"],
            }
        if outcome.cancelled:
            return Conclusion("cancelled", result, CANCELLED_ERROR)
        if thumbnail is None or settled is None:
            return Conclusion("failed", None, first_error(outcome))
        return Conclusion("succeeded", result)
