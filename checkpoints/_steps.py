"""The parts of a plan: its steps, what a step function sees, how a step's failure is
described, and how a run of the plan ended; `plan_blocks` splits a plan into the single
steps and blocks of concurrent groups that the runner executes in turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._models import JSON, Operation

if TYPE_CHECKING:
    from ._run import Run

StepFn = Callable[["StepContext"], Awaitable[JSON]]
#: Wraps one execution of a step, e.g. in the caller's retry policy.
StepWrapper = Callable[["StepContext", Callable[[], Awaitable[JSON]]], Awaitable[JSON]]
#: Turns a step's exception into the JSON error that is recorded and reported.
DescribeError = Callable[[BaseException], dict[str, Any]]

INTERRUPTED: dict[str, Any] = {
    "code": "INTERRUPTED",
    "message": "the step was interrupted before it completed",
    "retryable": True,
}


def describe_error(exc: BaseException) -> dict[str, Any]:
    """Default error description: the exception's `code` and `retryable` when it has them."""
    return {
        "code": str(getattr(exc, "code", type(exc).__name__)),
        "message": str(exc) or type(exc).__name__,
        "retryable": bool(getattr(exc, "retryable", False)),
    }


def is_retryable(error: Mapping[str, Any] | None) -> bool:
    return bool(error and error.get("retryable"))


@dataclass(frozen=True, slots=True)
class Step:
    """A named unit of work. `fn` returns the step's JSON output, which is recorded."""

    key: str
    fn: StepFn
    group: str | None = None
    #: Runs even after `cancel()` or after an earlier ungrouped step failed (e.g. settling
    #: credits). After a cancel other steps are skipped, except the rest of a group whose
    #: first step completed; after a failure they stay pending for a resume.
    always: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run of a plan ended."""

    outputs: Mapping[str, JSON]  # every completed step, earlier runs included
    failures: Mapping[str, Mapping[str, Any]]  # failed steps and their errors
    skipped: frozenset[str]
    failed_step: str | None  # the ungrouped step whose failure stopped the run
    cancelled: bool
    suspended: bool  # stopped by suspend(): unfinished steps stay pending


@dataclass(frozen=True, slots=True)
class StepContext:
    """What a step function sees."""

    run: Run
    step: Step
    attempt: int

    @property
    def operation(self) -> Operation:
        return self.run.operation

    @property
    def outputs(self) -> Mapping[str, JSON]:
        return self.run.outputs

    async def emit(self, type: str, data: Mapping[str, Any]) -> int:
        """Append an event (e.g. `retry`, `progress`) under the run's lease."""
        return await self.run.emit(type, data)

    @property
    def scratch(self) -> dict[str, Any]:
        """The run's in-memory handoff between its steps (see `Run.scratch`)."""
        return self.run.scratch


def plan_blocks(plan: Sequence[Step]) -> list[Step | list[list[Step]]]:
    """Split a plan into single steps and blocks of concurrent groups."""
    blocks: list[Step | list[list[Step]]] = []
    groups: dict[str, list[Step]] = {}
    for step in plan:
        if step.group is None:
            if groups:
                blocks.append(list(groups.values()))
                groups = {}
            blocks.append(step)
        else:
            groups.setdefault(step.group, []).append(step)
    if groups:
        blocks.append(list(groups.values()))
    return blocks
