"""`thumbnail.generate`: reserve credits; per variation render, variants, record; settle.

Side effects have deterministic identities, so a step cut off between "the provider
answered" and "the checkpoint committed" doubles nothing when it runs again: thumbnail id
= uuid5(operation id, variation), object keys derived from it (writes overwrite), the
thumbnail row inserted once, credits set to a target rather than added to. The price of a
thumbnail is read by `reserve` and kept for its `settle`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from checkpoints import JSON, Operation, Outcome, Step, StepContext, StepRecord, is_retryable

from .._spec import ThumbnailSpec
from .._storage import Storage, thumbnail_keys
from ..accounts import RESOLUTION_CREDITS, AccountsBackend, Charge, NewThumbnail, ThumbnailRows
from ..providers import ImageRequest
from ._kinds import CANCELLED_ERROR, Conclusion, ProviderCalls, first_error
from ._thumbnails import (
    Sign,
    discard_unrendered,
    is_watermarked,
    reserve,
    store_render,
    store_variants,
    thumbnail_id,
)
from ._thumbnails import delivered as _delivered


def spec_of(body: Mapping[str, Any], variation: int) -> ThumbnailSpec:
    return ThumbnailSpec(
        title=body["title"],
        thumbnail_text=body.get("thumbnail_text"),
        emotion=body.get("emotion"),
        pose=body.get("pose"),
        style=body.get("style"),
        palette=body.get("palette"),
        custom_style=body.get("custom_style"),
        resolution=body.get("resolution", "1K"),
        aspect_ratio=body.get("aspect_ratio", "16:9"),
        variation=variation,
    )


def generation_cost(body: Mapping[str, Any]) -> int:
    """The rate-limit units of a generation: a 4K thumbnail weighs 4 of a 1K one."""
    return RESOLUTION_CREDITS[body.get("resolution", "1K")] * int(body.get("variations", 1))


def generation_charge(body: Mapping[str, Any]) -> Charge:
    """How a generation's credits read in a credit history."""
    variations = int(body.get("variations", 1))
    thumbnails = "1 thumbnail" if variations == 1 else f"{variations} thumbnails"
    return Charge("generation", f"Thumbnail generation: {thumbnails} at "
                                f"{body.get('resolution', '1K')}, “{_short(body['title'])}”")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _palette(palette: str | list[str] | None) -> str | None:
    return ", ".join(palette) if isinstance(palette, list) else palette


@dataclass(frozen=True, slots=True)
class GenerateKind:
    accounts: AccountsBackend
    thumbnails: ThumbnailRows
    storage: Storage
    providers: ProviderCalls
    sign: Sign

    name: ClassVar[str] = "thumbnail.generate"
    rerun_on_resume: ClassVar[tuple[str, ...]] = ("reserve", "settle")

    def plan(self, operation: Operation) -> list[Step]:
        body = operation.input
        variations = int(body.get("variations", 1))
        steps = [Step("reserve", self._reserve)]
        for i in range(1, variations + 1):
            group = f"v{i}"
            steps += [
                Step(f"{group}/render", self._render, group=group),
                Step(f"{group}/variants", self._variants, group=group),
                Step(f"{group}/record", self._record, group=group),
            ]
        steps.append(Step("settle", self._settle, always=True))
        return steps

    @staticmethod
    def _variation(ctx: StepContext) -> int:
        return int(ctx.step.key.split("/")[0].removeprefix("v"))

    async def _price(self, operation: Operation) -> int:
        """Credits of one thumbnail of the operation, now."""
        prices = await self.accounts.prices()
        return prices.per_thumbnail(operation.input.get("resolution", "1K"))

    async def _reserve(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        per = await self._price(op)
        variations = int(op.input.get("variations", 1))
        # Charge every variation delivered or still to deliver; one that failed for good
        # (or was skipped) in an earlier round costs nothing.
        records = ctx.run.records
        live = [
            i for i in range(1, variations + 1)
            if not any(_dead(records[f"v{i}/{part}"]) for part in ("render", "variants", "record"))
        ]
        target = per * len(live)
        balance, watermarked = await reserve(self.accounts, op, target,
                                             generation_charge(op.input))
        return {"charged": target, "per_thumbnail": per, "credits_remaining": balance,
                "has_watermark": watermarked}

    async def _render(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        i = self._variation(ctx)
        request = ImageRequest(
            spec=spec_of(op.input, i),
            reference_images=tuple(op.input.get("reference_images") or ()),
            model=op.input.get("model"),
            context=f"{op.id} {ctx.step.key}",
        )
        image = await self.providers.run(ctx, lambda provider: provider.generate(request),
                                         model=request.model)
        keys = thumbnail_keys(op.user_id, thumbnail_id(op.id, f"v{i}"))
        await store_render(self.storage, ctx, keys["image"], image)
        return {
            "image_key": keys["image"], "width": image.width, "height": image.height,
            "provider": image.provider, "mime_type": image.mime_type,
        }

    async def _variants(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        i = self._variation(ctx)
        rendered = ctx.outputs[f"v{i}/render"]
        return await store_variants(
            self.storage, self.sign, ctx, thumbnail_id(op.id, f"v{i}"), rendered["image_key"],
        )

    async def _record(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        i = self._variation(ctx)
        rendered = ctx.outputs[f"v{i}/render"]
        variants = ctx.outputs[f"v{i}/variants"]
        thumb = thumbnail_id(op.id, f"v{i}")
        watermarked = await is_watermarked(self.accounts, ctx)
        await self.thumbnails.record(NewThumbnail(
            id=thumb, user_id=op.user_id, operation_id=op.id, title=op.input["title"],
            image_key=rendered["image_key"], image_400w_key=variants["image_400w_key"],
            image_800w_key=variants["image_800w_key"], width=rendered["width"],
            height=rendered["height"], resolution=op.input.get("resolution", "1K"),
            aspect_ratio=op.input.get("aspect_ratio", "16:9"), provider=rendered["provider"],
            style=op.input.get("style"), palette=_palette(op.input.get("palette")),
            emotion=op.input.get("emotion"), project_id=op.input.get("project_id"),
            has_watermark=watermarked,
        ))
        return {"thumbnail_id": thumb}

    async def _settle(self, ctx: StepContext) -> JSON:
        op = ctx.operation
        reserved = ctx.outputs.get("reserve") or {}
        # The price `reserve` charged at (a cancel may have skipped it: then today's).
        per = (reserved["per_thumbnail"] if "per_thumbnail" in reserved
               else await self._price(op))
        variations = range(1, int(op.input.get("variations", 1)) + 1)
        delivered = [i for i in variations if f"v{i}/record" in ctx.outputs]
        balance = await self.accounts.set_charge(op.user_id, op.id, per * len(delivered),
                                                 generation_charge(op.input))
        await discard_unrendered(self.storage, ctx, {f"v{i}": f"v{i}/render" for i in variations})
        return {"credits_used": per * len(delivered), "credits_remaining": balance}

    def conclude(
        self, operation: Operation, outcome: Outcome, steps: Mapping[str, StepRecord]
    ) -> Conclusion:
        variations = int(operation.input.get("variations", 1))
        outputs = dict(outcome.outputs)
        delivered = [t for i in range(1, variations + 1)
                     if (t := _delivered(outputs, f"v{i}")) is not None]
        settled = outcome.outputs.get("settle")
        result = None
        if settled is not None:
            result = {
                "thumbnails": delivered,
                "credits_used": settled["credits_used"],
                "credits_remaining": settled["credits_remaining"],
            }
        if outcome.cancelled:
            return Conclusion("cancelled", result, CANCELLED_ERROR)
        if settled is None or not delivered:
            return Conclusion("failed", result if delivered else None, first_error(outcome))
        return Conclusion("succeeded" if len(delivered) == variations else "partial", result)


def _dead(record: StepRecord) -> bool:
    """Skipped, or failed with an error no retry fixes: its variation is not delivered."""
    return record.status == "skipped" or (
        record.status == "failed" and not is_retryable(record.error)
    )
