"""The checkpoint writes of one owner's turn at an operation (`Run` is the turn): each
step's state with its `step` event as one fenced write, through a database outage. A
completion is held back for the next write of its sequence (the start of the step that
follows it, or the terminal write), and a status change for the first step's start, so
that a run of n steps costs n + 1 statements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ._models import Lease, Operation, OperationStatus, StepRecord
from ._outage import Landed, durable, through_outage
from ._write import Written

if TYPE_CHECKING:
    from ._runner import Runner

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Unrecorded:
    """A completed step whose completion is not written yet: it goes first in the next
    write of its sequence, which comes before any further work of that sequence."""

    record: StepRecord
    event: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Opening:
    """A status change (and its event) not written yet: it goes with the run's next
    write, the first step's start when that comes next (see `Run.open`)."""

    status: OperationStatus
    event: tuple[str, Mapping[str, Any]] | None
    at: datetime | None


class RunCheckpoints:
    """The writes of a run, and what it holds back for its next write."""

    def __init__(self, runner: Runner, lease: Lease, operation: Operation) -> None:
        self.runner = runner
        self.store = runner.store
        self.lease = lease
        self.operation = operation
        self.lost = False
        self.finished = False  # `finish` wrote the terminal state (and freed the lease)
        #: The operation as `finish` wrote it, when its write's answer told all of it.
        self.finished_operation: Operation | None = None
        self.records: dict[str, StepRecord] = {}
        self._cancelled = operation.cancel_requested
        self._opening: Opening | None = None
        #: The last completion of `execute`, written with `finish` (or by `flush`).
        self._last: Unrecorded | None = None

    # -- writes -------------------------------------------------------------------------

    def _seen(self, written: Written) -> Written:
        if written.cancel_requested:
            self._cancelled = True
        return written

    async def emit(self, type: str, data: Mapping[str, Any]) -> int:
        """Append an event under the lease; returns its sequence number."""
        await self._write_opening()
        written = await self.store.append_event(
            self.lease, type, {"operation_id": self.operation.id, **data}
        )
        self._seen(written)
        assert written.seq is not None
        return written.seq

    async def set_status(self, status: OperationStatus) -> None:
        """Set a non-terminal status now (see `CheckpointStore.set_status`)."""
        await self._write_opening()
        self.open(status)
        await self._write_opening()

    def open(
        self,
        status: OperationStatus,
        *,
        event: tuple[str, Mapping[str, Any]] | None = None,
        at: datetime | None = None,
    ) -> None:
        """`set_status`, written with the run's next write: with the first step's start
        when that comes next (one write instead of two), else on its own before it."""
        self._opening = Opening(status, self._ours(event), at)

    def _ours(
        self, event: tuple[str, Mapping[str, Any]] | None
    ) -> tuple[str, Mapping[str, Any]] | None:
        """The event with this operation's id in its data."""
        return None if event is None else (event[0], {"operation_id": self.operation.id,
                                                      **event[1]})

    async def _write_opening(self) -> None:
        """Write a status change `open` left pending, on its own."""
        if (opening := self._opening) is not None:
            self._opening = None
            self._seen(await self.store.set_status(self.lease, opening.status,
                                                   event=opening.event, at=opening.at))

    async def flush(self) -> None:
        """Write what the run holds back for its next write (a status change, the last
        completion): before it stops without `finish`."""
        await self._write_opening()
        last, self._last = self._last, None
        await self._flush(last)

    async def _record(
        self,
        record: StepRecord,
        event: dict[str, Any],
        *,
        after: Unrecorded | None = None,
        unless_cancelled: bool = False,
        patient: bool = True,
    ) -> bool:
        """Write a step's state and event, after `after` in the same write when given
        (or after the status change `open` left pending, when this is a step's start);
        with `unless_cancelled`, only when nobody asked to cancel; through a database
        outage unless not `patient`. Whether it was written."""
        step_event = self._step_event(event)
        opening = self._opening
        if opening is not None and (after is not None or record.status != "running"):
            await self._write_opening()
            opening = None
        if opening is not None:
            self._opening = None

            async def opened() -> bool:
                return (await self.store.get_operation(self.operation.id)).status == (
                    opening.status)

            written = await self._then(
                lambda: self.store.set_status(
                    self.lease, opening.status, event=opening.event, at=opening.at,
                    then=(record, step_event), then_unless_cancelled=unless_cancelled,
                ),
                first_landed=opened, record=record, patient=patient,
            )
        elif after is not None:
            written = await self._then(
                lambda: self.store.record_step(
                    self.lease, after.record, event=self._step_event(after.event),
                    then=(record, step_event), then_unless_cancelled=unless_cancelled,
                ),
                first_landed=lambda: self._landed(after.record), record=record,
                patient=patient,
            )
        else:
            answer = await self._persist(
                lambda: self.store.record_step(self.lease, record, event=step_event),
                landed=lambda: self._landed(record), patient=patient,
            )
            if not isinstance(answer, Landed):
                self._seen(answer)
            written = True
        if written:
            self.records[record.key] = record
        return written

    async def _then(
        self, write: Callable[[], Awaitable[Written]], *,
        first_landed: Callable[[], Awaitable[bool]], record: StepRecord, patient: bool,
    ) -> bool:
        """A write whose `then` part is `record` (see `_record`): whether that part was
        written (it is left out when a cancel was asked and the write said so)."""
        then_landed: list[bool] = []

        async def landed() -> bool:
            if not await first_landed():
                return False
            then_landed.append(await self._landed(record))
            return True

        written = await self._persist(write, landed=landed, patient=patient)
        if isinstance(written, Landed):
            if not then_landed[-1]:  # the write left `then` out: a cancel was asked
                self._cancelled = True
                return False
            return True
        self._seen(written)
        return written.then_written

    def _step_event(self, event: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        return ("step", {"operation_id": self.operation.id, **event})

    async def _landed(self, record: StepRecord) -> bool:
        """Whether the step's row is `record` (its status, at its attempt)."""
        steps = await self.store.get_steps(self.operation.id)
        return any(s.key == record.key and s.status == record.status
                   and s.attempts == record.attempts for s in steps)

    async def _persist(
        self, write: Callable[[], Awaitable[T]], *, landed: Callable[[], Awaitable[bool]],
        patient: bool = True,
    ) -> T | Landed:
        """A checkpoint written through a database outage (tried once only, unless
        `patient`): see `through_outage`. The lease's fence still refuses the write if a
        newer owner took the operation over meanwhile."""
        return await through_outage(
            lambda: durable(write()), landed=landed, what=f"checkpoint of {self.operation.id}",
            patience=self.runner.outage_patience if patient else 0.0,
        )

    async def _flush(self, unrecorded: Unrecorded | None) -> None:
        if unrecorded is not None:
            await self._record(unrecorded.record, unrecorded.event)
