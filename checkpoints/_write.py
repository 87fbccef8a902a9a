"""The writes whose SQL differs by dialect, as one small interface the store talks to.

`_pg_write.py` implements it for PostgreSQL and `_sqlite_write.py` for SQLite; on both a
fenced write is one statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ._errors import CheckpointError, LeaseLost, OperationNotFound
from ._models import Lease, StepRecord
from ._rows import step_of
from ._schema import operation_steps


@dataclass(frozen=True, slots=True)
class Written:
    """What a fenced write tells its writer."""

    seq: int | None  # the last event's sequence number, when the write appended one
    cancel_requested: bool  # someone asked to cancel the operation
    then_written: bool = False  # the write's `then` part was applied


@dataclass(frozen=True, slots=True)
class FencedWrite:
    """One atomic write: the operation's row, and optionally a step row and an event."""

    operation_id: str
    token: int | None  # the writer's lease token; None writes without a fence
    sets: Mapping[str, Any]  # the operation's columns, `updated_at` always among them
    step: StepRecord | None
    event: tuple[str, Mapping[str, Any]] | None
    now: datetime
    #: A second step row (optional) and event written after the first ones (the next
    #: step's start, after a step's completion; the terminal event, after the last
    #: step's completion); left out when `then_unless_cancelled` and someone asked to
    #: cancel the operation.
    then: tuple[StepRecord | None, tuple[str, Mapping[str, Any]]] | None = None
    then_unless_cancelled: bool = False

    def refused(self) -> CheckpointError:
        """The error to raise when no operation row let the write through."""
        if self.token is not None:
            return LeaseLost(self.operation_id, self.token)
        return OperationNotFound(self.operation_id)


#: The step columns a plan's statement returns, and their types (for its results).
STEP_TYPES: Final = tuple(
    operation_steps.c[name] for name in ("key", "position", "status", "attempts", "output",
                                         "error", "started_at", "finished_at")
)
STEP_COLUMNS: Final = ", ".join(column.name for column in STEP_TYPES)


def planned(rows: Sequence[sa.Row[Any]]) -> list[StepRecord] | None:
    """The plan's step records in plan order from its statement's RETURNING rows; None
    when there are none (the fence refused the statement: a plan is never empty)."""
    if not rows:
        return None
    return sorted((step_of(row) for row in rows), key=lambda step: (step.position, step.key))


class DialectWrites(Protocol):
    """What the store asks of its database's dialect."""

    def insert(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """The dialect's INSERT, the one that knows ON CONFLICT."""

    async def write(self, write: FencedWrite) -> Written:
        """Apply `write` atomically; raise `write.refused()` when the fence refuses it."""

    async def plan(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord] | None:
        """Insert the (non-empty) plan's new steps `pending` and move known ones to their
        position, in one statement under the lease; returns the plan's step rows as the
        statement left them (see `planned`), None when the fence refused it."""
