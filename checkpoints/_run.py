"""One owner's turn at an operation: its plan's steps run in order (groups
concurrently), each start, completion, failure and skip written as a fenced checkpoint
with its `step` event; a completion goes with the start of the step that follows it in
one write (one statement), before that step runs. The writes themselves, and what a run
holds back for its next write, are `RunCheckpoints`' (`_run_writes.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._errors import LeaseLost
from ._models import JSON, Lease, Operation, OperationStatus, StepRecord
from ._outage import Landed, durable, through_outage
from ._run_writes import RunCheckpoints, Unrecorded
from ._steps import INTERRUPTED, Outcome, Step, StepContext, is_retryable, plan_blocks

if TYPE_CHECKING:
    from ._runner import Runner

log = logging.getLogger("checkpoints")


class Run(RunCheckpoints):
    """One owner's turn at an operation: plan, execute, finish."""

    def __init__(self, runner: Runner, lease: Lease, operation: Operation) -> None:
        super().__init__(runner, lease, operation)
        #: What a step leaves in memory for a later step of this turn (e.g. an image it
        #: has already decoded). Never written: a run taken over or resumed starts
        #: without it, so a step may use it only to skip work it can also redo.
        self.scratch: dict[str, Any] = {}
        self._plan: list[Step] = []
        self._suspended = False
        self._failures: dict[str, Mapping[str, Any]] = {}

    # -- control ------------------------------------------------------------------------

    @property
    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Start no new paid work: skip what has not started (see `Step`)."""
        self._cancelled = True

    def suspend(self) -> None:
        """Start no new step at all; unfinished steps stay pending for a later owner."""
        self._suspended = True

    @property
    def outputs(self) -> dict[str, JSON]:
        return {k: r.output for k, r in self.records.items() if r.status == "completed"}

    def _load(self, records: Sequence[StepRecord]) -> None:
        self.records = {r.key: r for r in records}
        self._failures = {
            k: r.error or {} for k, r in self.records.items() if r.status == "failed"
        }

    async def keep_lease(self, owner_task: asyncio.Task[Any] | None) -> None:
        while True:
            await self.runner.sleep(self.runner.renew_every)
            try:
                # `claim` cancels this keeper when the run ends, often mid-renewal. Cut off
                # there on SQLite, the renewal's UPDATE … RETURNING is left unfinished and
                # keeps the database's write lock (until its cursor is garbage-collected),
                # stalling every writer of every process for the busy timeout and beyond.
                self.lease = await durable(
                    self.store.renew_lease(self.lease, self.runner.lease_ttl)
                )
            except LeaseLost:
                log.warning("lease on %s lost to a newer owner", self.operation.id)
                self.lost = True
                if owner_task is not None:
                    owner_task.cancel()
                return
            except Exception:  # a passing database fault: the next renewal may work
                log.exception("renewing the lease on %s failed", self.operation.id)

    # -- planning and execution ---------------------------------------------------------

    async def plan(self, steps: Sequence[Step]) -> list[StepRecord]:
        """Record the plan's steps (keeping what earlier runs completed); returns them."""
        keys = [s.key for s in steps]
        if len(set(keys)) != len(keys):
            raise ValueError("step keys must be unique within a plan")
        self._plan = list(steps)
        self._load(await self.store.plan_steps(self.lease, keys))
        return [self.records[k] for k in keys]

    async def reset(self, keys: Sequence[str]) -> None:
        """Run these (completed or failed) steps again in the next `execute`."""
        records = await self.store.reset_steps(self.lease, keys)
        self.records = {r.key: r for r in records}
        for key in keys:
            self._failures.pop(key, None)

    async def execute(self) -> Outcome:
        """Run every unfinished step of the plan, in order, groups concurrently.

        A failed ungrouped step halts the plan: later steps stay pending, except those
        marked `always`."""
        halted = False
        unrecorded: Unrecorded | None = None
        for block in plan_blocks(self._plan):
            if self._suspended:
                break
            if isinstance(block, Step):
                if halted and not block.always:
                    continue
                ok, unrecorded = await self._run_sequence([block], unrecorded)
                if not ok:
                    halted = True
            elif halted:
                continue
            elif len(block) == 1:  # one group runs alone: it goes on from the step before
                _, unrecorded = await self._run_sequence(block[0], unrecorded)
            else:
                await self._flush(unrecorded)
                await self._write_opening()  # not for the groups to race for
                unrecorded = None
                async with asyncio.TaskGroup() as tasks:
                    for steps in block:
                        tasks.create_task(self._run_group(steps))
        await self._write_opening()
        if self._suspended:
            await self._flush(unrecorded)
        else:  # written with `finish` (or by `flush`)
            self._last = unrecorded
        return self._outcome()

    async def _run_group(self, steps: Sequence[Step]) -> None:
        _, unrecorded = await self._run_sequence(steps, None)
        await self._flush(unrecorded)

    async def _run_sequence(
        self, steps: Sequence[Step], unrecorded: Unrecorded | None
    ) -> tuple[bool, Unrecorded | None]:
        """Run steps in order; False when one failed (the rest are left or skipped).

        `unrecorded`: an earlier completion to write first; the last completion is handed
        back unwritten, for the caller's next write."""
        for i, step in enumerate(steps):
            record = self.records[step.key]
            if record.status in ("completed", "skipped"):
                continue
            if record.status == "failed" and not is_retryable(record.error):
                await self._flush(unrecorded)
                await self._skip(steps[i + 1 :])
                return False, None
            if self._suspended:
                return True, unrecorded
            group_started = step.group is not None and any(
                self.records[s.key].status == "completed" for s in steps[:i]
            )
            cancellable = not (step.always or group_started)
            if self._cancelled and cancellable:
                await self._flush(unrecorded)
                unrecorded = None
                await self._skip([step])
                continue
            ran, unrecorded = await self._run_step(step, unrecorded, cancellable=cancellable)
            if ran is None:  # a cancel, learned from the write that would have started it
                await self._skip([step])
                continue
            if not ran:
                error = self._failures[step.key]
                if step.group is not None and not is_retryable(error):
                    await self._skip(steps[i + 1 :])
                return False, None
        return True, unrecorded

    async def _run_step(
        self, step: Step, unrecorded: Unrecorded | None, *, cancellable: bool
    ) -> tuple[bool | None, Unrecorded | None]:
        """Start, run and complete a step; its completion comes back unwritten.

        None when the step was not started: the write of `unrecorded` answered that a
        cancel was requested, and the step is `cancellable`."""
        before = self.records[step.key]
        attempt = before.attempts + 1
        started = dataclasses.replace(
            before, status="running", attempts=attempt, started_at=self.store.now(),
            finished_at=None, error=None, output=None,
        )
        start_event = {"step": step.key, "status": "started", "attempt": attempt}
        if unrecorded is None and self._opening is None:
            await self._record(started, start_event)
        elif not await self._record(
            started, start_event, after=unrecorded, unless_cancelled=cancellable
        ):
            return None, None
        self._failures.pop(step.key, None)
        context = StepContext(self, step, attempt)
        try:
            output = await self._call(step, context)
        except asyncio.CancelledError:
            # Leave the step failed (and retryable), never half-recorded.
            with contextlib.suppress(Exception):
                await self._fail(started, INTERRUPTED, patient=False)
            raise
        except Exception as exc:
            await self._fail(started, self.runner.describe_error(exc))
            return False, None
        completed = dataclasses.replace(
            started, status="completed", output=output, finished_at=self.store.now()
        )
        # Ahead of the write: the rest of the sequence decides on it (e.g. group started).
        self.records[step.key] = completed
        return True, Unrecorded(
            completed,
            {"step": step.key, "status": "completed", "attempt": attempt,
             "output": self.runner.public_output(output)},
        )

    async def _call(self, step: Step, context: StepContext) -> JSON:
        """Call the step; a step cut short by a database it cannot reach is called again
        once the database is back (steps are idempotent: any step may run again after a
        crash), for up to the runner's `outage_patience`."""

        def attempt() -> Awaitable[JSON]:
            if self.runner.wrap is None:
                return step.fn(context)
            return self.runner.wrap(context, lambda: step.fn(context))

        output = await through_outage(attempt, patience=self.runner.outage_patience,
                                      what=f"step {step.key} of {self.operation.id}")
        assert not isinstance(output, Landed)  # no `landed`: every answer is the step's
        return output

    async def _fail(
        self, started: StepRecord, error: Mapping[str, Any], *, patient: bool = True
    ) -> None:
        failed = dataclasses.replace(
            started, status="failed", error=dict(error), finished_at=self.store.now()
        )
        self._failures[started.key] = failed.error or {}
        await self._record(
            failed,
            {"step": started.key, "status": "failed", "attempt": started.attempts,
             "error": dict(error)},
            patient=patient,
        )

    async def _skip(self, steps: Sequence[Step]) -> None:
        for step in steps:
            record = self.records[step.key]
            if record.status in ("completed", "skipped"):
                continue
            skipped = dataclasses.replace(record, status="skipped", finished_at=self.store.now())
            await self._record(
                skipped, {"step": step.key, "status": "skipped", "attempt": record.attempts}
            )

    def _outcome(self) -> Outcome:
        failed_step = next(
            (
                s.key
                for s in self._plan
                if s.group is None and self.records[s.key].status == "failed"
            ),
            None,
        )
        return Outcome(
            outputs=self.outputs,
            failures={k: self._failures[k] for k in self.records if k in self._failures},
            skipped=frozenset(k for k, r in self.records.items() if r.status == "skipped"),
            failed_step=failed_step,
            cancelled=self._cancelled,
            suspended=self._suspended,
        )

    async def finish(
        self,
        status: OperationStatus,
        *,
        result: JSON | None = None,
        error: Mapping[str, Any] | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> int | None:
        """End the operation: terminal status, result or error, and the terminal event.

        Unless the operation stays resumable (`failed` with a retryable error), steps that
        never completed are marked `skipped` first.
        """
        pending = [s for s in self._plan if self.records[s.key].status == "pending"]
        if pending and not (status == "failed" and is_retryable(error)):
            await self._flush(self._last)  # the skips come after the last completion
            self._last = None
            await self._skip(pending)
        await self._write_opening()
        last, self._last = self._last, None
        after = None if last is None else (last.record, self._step_event(last.event))

        async def landed() -> bool:
            op = await self.store.get_operation(self.operation.id)
            return op.is_finished and op.status == status

        at = self.store.now()
        written = await self._persist(
            lambda: self.store.finish_operation(
                self.lease, status, result=result, error=error, event=self._ours(event),
                at=at, after=after,
            ),
            landed=landed,
        )
        self.finished = True
        if isinstance(written, Landed):
            return None
        if written.seq is not None:  # this write's last event is the log's last: all is known
            self.finished_operation = dataclasses.replace(
                self.operation, status=status, result=result, error=error,
                lease_owner=None, lease_expires_at=None, last_seq=written.seq,
                cancel_requested=self.operation.cancel_requested or written.cancel_requested,
                updated_at=at, finished_at=at,
            )
        return written.seq
