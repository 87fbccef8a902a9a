"""What every operation kind provides to the operation manager."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol, TypeVar

from checkpoints import JSON, Operation, OperationStatus, Outcome, Step, StepContext, StepRecord

from .._errors import CANCELLED, ErrorInfo, ProviderError
from ..providers import GeneratedImage, ImageProvider, ProviderChain, RetryPolicy

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Conclusion:
    """How a finished run ends the operation."""

    status: OperationStatus  # succeeded | partial | failed | cancelled
    result: JSON | None = None
    error: Mapping[str, Any] | None = None


class OperationKind(Protocol):
    name: ClassVar[str]
    #: Bookkeeping steps run again when a failed operation is resumed (e.g. credits).
    rerun_on_resume: ClassVar[tuple[str, ...]]

    def plan(self, operation: Operation) -> list[Step]: ...

    def conclude(
        self, operation: Operation, outcome: Outcome, steps: Mapping[str, StepRecord]
    ) -> Conclusion: ...


#: The rate-limit route of each operation kind (its units and concurrency slots).
ROUTE_OF_KIND: Final[Mapping[str, str]] = {
    "thumbnail.generate": "generate",
    "thumbnail.edit": "edit",
    "heatmap": "heatmap",
    "video.analyze": "video-analysis",
}

#: The recorded error of a cancelled run.
CANCELLED_ERROR: Final[Mapping[str, Any]] = CANCELLED.record()
_UNEXPLAINED: Final = ErrorInfo("PROVIDER_ERROR", "the operation failed", 502, retryable=True)


def first_error(outcome: Outcome) -> Mapping[str, Any]:
    """The error that explains a failed run: its stopping step's, else the first one."""
    if outcome.failed_step is not None:
        return outcome.failures[outcome.failed_step]
    if outcome.failures:
        return next(iter(outcome.failures.values()))
    return _UNEXPLAINED.record()


async def retrying(policy: RetryPolicy, ctx: StepContext, call: Callable[[], Awaitable[T]]) -> T:
    """`call` under the retry policy, each retry reported as a `retry` event of the step."""

    async def on_retry(attempt: int, delay: float, error: ProviderError) -> None:
        await ctx.emit("retry", {
            "step": ctx.step.key, "attempt": attempt, "delay_s": round(delay, 3),
            "error": {"code": error.code, "message": error.message},
        })

    return await policy.call(call, on_retry)


@dataclass(frozen=True, slots=True)
class ProviderCalls:
    """Provider calls of a step: the retry policy around each provider of the fallback
    chain, each retry and each fallback reported as a `retry` event."""

    chain: ProviderChain
    policy: RetryPolicy

    async def run(
        self, ctx: StepContext, use: Callable[[ImageProvider], Awaitable[GeneratedImage]],
        model: str | None = None,
    ) -> GeneratedImage:
        """`use` the providers that serve `model` (a choice name; None: any)."""
        async def on_fallback(failed: str, following: str, error: ProviderError) -> None:
            await ctx.emit("retry", {
                "step": ctx.step.key, "attempt": 1, "delay_s": 0.0, "provider": following,
                "error": {"code": error.code,
                          "message": f"{failed} failed for good ({error.message}); "
                                     f"trying {following}"},
            })

        async def with_retries(provider: ImageProvider) -> GeneratedImage:
            return await retrying(self.policy, ctx, lambda: use(provider))

        return await self.chain.for_model(model).call(with_retries, on_fallback)
