"""What every operation kind provides to the operation manager."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from checkpoints import JSON, Operation, OperationStatus, Outcome, Step, StepRecord


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


def first_error(outcome: Outcome) -> Mapping[str, Any]:
    """The error that explains a failed run: its stopping step's, else the first one."""
    if outcome.failed_step is not None:
        return outcome.failures[outcome.failed_step]
    if outcome.failures:
        return next(iter(outcome.failures.values()))
    return {"code": "PROVIDER_ERROR", "message": "the operation failed", "retryable": True}


CANCELLED_ERROR: Mapping[str, Any] = {
    "code": "OPERATION_CANCELLED",
    "message": "the operation was cancelled",
    "retryable": False,
}
