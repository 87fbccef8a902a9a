"""Runs of operations, owned by the process; streams of their event logs.

A run executes in a task of the process, never of a connection: a client that goes away
does not cancel paid work. Any way back to an operation (the same Idempotency-Key, the
events URL, resume) follows its log and, when the owner's lease has expired (a crashed
instance), takes the run over and continues it from its first unfinished step.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from typing import Any, Final

import ratelimit
from checkpoints import (
    CheckpointStore,
    Event,
    LeaseLost,
    LeaseUnavailable,
    Operation,
    OperationStatus,
    Run,
    Runner,
    StepRecord,
    is_connection_failure,
    is_retryable,
    lease_of,
)

from .._errors import ErrorInfo, OperationNotResumable
from ._kinds import OperationKind
from ._slots import held

log = logging.getLogger("service.operations")

TERMINAL_EVENTS: Final = frozenset({"result", "error"})
#: How often a follower with nothing new re-checks its operation's owner.
FOLLOW_CHECK_S: Final = 2.0
#: Crashes outside the steps before an operation is ended as INTERNAL_ERROR.
MAX_CRASHES: Final = 3
CRASHED: Final = ErrorInfo("INTERNAL_ERROR",
                           "the operation failed unexpectedly; resume it to try again",
                           500, retryable=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Ended:
    """A finished operation and, when its run ended in this process, its step records as
    that run left them (None: read them)."""

    operation: Operation
    steps: list[StepRecord] | None = None


#: The snapshot of an operation and its step records, as clients see it.
Snapshot = Callable[[Operation, list[StepRecord]], Awaitable[dict[str, Any]]]
#: Acquires the concurrency slot of an operation's route for its user (raises
#: ratelimit.RateLimitExceeded when all are held, RateLimitUnavailable in an outage).
SlotFor = Callable[[Operation], Awaitable[ratelimit.Slot]]


class Operations:
    def __init__(
        self,
        store: CheckpointStore,
        runner: Runner,
        kinds: Mapping[str, OperationKind],
        present: Snapshot,
        *,
        on_finished: Callable[[Operation, str], None] | None = None,
        slot_for: SlotFor | None = None,
    ) -> None:
        self.store = store
        self.runner = runner
        self.kinds = kinds
        self.present = present
        self.accepting = True
        self._tasks: dict[str, asyncio.Task[Ended | None]] = {}
        self._runs: dict[str, Any] = {}
        # Operations whose steps run here now (this process holds the lease; the run has
        # not started to finish): their followers need no database read to know that.
        self._running: dict[str, Operation] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._crashes: dict[str, int] = {}
        self._on_finished = on_finished
        self._slot_for = slot_for

    # -- starting and taking over -------------------------------------------------------

    async def create(
        self, *, user_id: str, kind: str, input: Mapping[str, Any], idempotency_key: str | None
    ) -> tuple[Operation, bool]:
        """Create an operation (or find the one of its Idempotency-Key): one created now is
        created held by this process, so that `start` runs it without taking it first.
        Whether it was created now."""
        return await self.store.create_operation(
            user_id=user_id, kind=kind, input=dict(input), idempotency_key=idempotency_key,
            owner=self.runner.owner if self.accepting else None, ttl=self.runner.lease_ttl,
        )

    def start(
        self, operation_id: str, *, reopen: bool = False, slot: ratelimit.Slot | None = None,
        created: Operation | None = None,
    ) -> asyncio.Future[None]:
        """Run the operation here unless this process already does (or is shutting down).

        Losing the race for the lease is fine: the winner runs it and we follow. A
        concurrency `slot` is held (and renewed) for as long as the run lasts. `created`:
        the operation as `create` made it, held by this process. The returned future is
        done once the run has started (or did not start).
        """
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        previous = self._tasks.get(operation_id)
        if not self.accepting or (previous is not None and not reopen):
            started.set_result(None)
            if slot is not None:
                self._in_background(slot.release())
            if created is not None and created.lease_owner == self.runner.owner:
                # Not run here after all: free it for an instance that will.
                self._in_background(self.store.release_lease(lease_of(created)))
            return started
        # A resume may arrive while the run that just failed winds down here: it runs
        # once that one has ended.
        task = asyncio.create_task(
            self._run(operation_id, reopen, slot, started, after=previous, taken=created),
            name=f"run:{operation_id}",
        )
        self._tasks[operation_id] = task

        def forget(done: asyncio.Task[Ended | None]) -> None:
            if self._tasks.get(operation_id) is done:
                del self._tasks[operation_id]

        task.add_done_callback(forget)
        return started

    def _in_background(self, work: Coroutine[Any, Any, object]) -> None:
        """Run `work` to its end whoever waits (shutdown waits for nothing of it)."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def take_over_if_orphaned(self, operation: Operation) -> None:
        """Start an unfinished operation whose owner is gone (or that never started).
        One this process runs is never orphaned, whatever the lease `operation` shows
        (e.g. as `running_here` gave it, from before its renewals)."""
        if operation.id in self._tasks or operation.is_finished:
            return
        if not operation.is_leased(self.store.now().timestamp()):
            self.start(operation.id)

    async def sweep(self, every_s: float) -> None:
        """Now and then, take over the runs whose owner is gone and that nobody follows
        (their reserved credits would otherwise stay charged): every unfinished operation
        ends, whether or not its client comes back. Runs until cancelled."""
        while self.accepting:
            await asyncio.sleep(every_s * random.uniform(0.5, 1.5))
            try:
                orphans = await self.store.orphaned(idle_for=every_s)
            except Exception as exc:
                if not is_connection_failure(exc):
                    log.exception("looking for orphaned runs failed")
                continue
            for operation_id in orphans:
                if operation_id not in self._tasks and self.accepting:
                    log.info("taking over an orphaned run", extra={"operation_id": operation_id})
                    self.start(operation_id)

    async def resume(self, operation: Operation) -> None:
        """Restart a failed operation whose error is retryable; 409 for other finished
        operations. Unfinished ones are simply taken over when orphaned.

        A restarted run is new work in flight: it needs one of its route's concurrency
        slots like a new operation (429 when the user's are all held)."""
        if operation.is_finished:
            if operation.status != "failed" or not is_retryable(operation.error):
                raise OperationNotResumable(
                    f"the operation is {operation.status} and cannot be resumed"
                )
            slot = await self._slot_for(operation) if self._slot_for is not None else None
            await self.start(operation.id, reopen=True, slot=slot)
        else:
            await self.take_over_if_orphaned(operation)

    async def _run(
        self,
        operation_id: str,
        reopen: bool,
        slot: ratelimit.Slot | None,
        started_future: asyncio.Future[None],
        *,
        after: asyncio.Task[Ended | None] | None = None,
        taken: Operation | None = None,
    ) -> Ended | None:
        """The run; returns how it ended when it finished the operation and knows all of
        it (else None)."""
        started = time.perf_counter()
        try:
            if after is not None:
                await asyncio.wait([after])
            async with held(slot), self.runner.claim(operation_id, taken=taken) as run:
                self._runs[operation_id] = run
                spare = None if slot is not None else await self._spare_slot(run.operation)
                async with held(spare):
                    try:
                        await self._drive(run, reopen, started_future, started)
                        if run.finished_operation is not None:
                            return Ended(run.finished_operation, list(run.records.values()))
                    except LeaseLost:
                        raise
                    except Exception:
                        await self._crashed(run)
        except LeaseUnavailable:
            pass  # another owner runs it; followers read its log
        except LeaseLost:
            log.warning("run lost its lease", extra={"operation_id": operation_id})
        except Exception:
            log.exception("run could not start", extra={"operation_id": operation_id})
        finally:
            self._runs.pop(operation_id, None)
            _done(started_future)
        return None

    async def _crashed(self, run: Run) -> None:
        """A run failed outside its steps (a fault or a bug). It stays unfinished, to be
        taken over by the next follower — but not forever: after MAX_CRASHES in this
        process it ends as a retryable INTERNAL_ERROR (a resume tries again)."""
        op_id = run.operation.id
        crashes = self._crashes[op_id] = self._crashes.get(op_id, 0) + 1
        log.exception("run crashed", extra={"operation_id": op_id})
        if crashes < MAX_CRASHES:
            return
        self._crashes.pop(op_id, None)
        with contextlib.suppress(Exception):
            await run.finish("failed", error=CRASHED.record(), event=("error", CRASHED.record()))
            if self._on_finished is not None:
                self._on_finished(run.operation, "failed")

    async def _drive(
        self, run: Run, reopen: bool, started_future: asyncio.Future[None], started: float
    ) -> None:
        """Plan, execute and finish one claimed operation."""
        op = run.operation
        if op.is_finished and not (
            reopen and op.status == "failed" and is_retryable(op.error)
        ):
            return  # finished meanwhile by someone else
        kind = self.kinds[op.kind]
        await run.plan(kind.plan(op))
        if op.is_finished:
            await run.reset(list(kind.rerun_on_resume))
        if op.status != "running":
            # The status and the first event, with the snapshot of the operation as that
            # write leaves it, go in one write: the first step's start.
            now = self.store.now()
            op = dataclasses.replace(op, status="running", result=None, error=None,
                                     finished_at=None, updated_at=now)
            run.operation = op
            first = {"operation": await self.present(op, list(run.records.values()))}
            run.open("running", event=("operation", first), at=now)
            _done(started_future)
        else:
            _done(started_future)
            await run.emit(
                "operation",
                {"operation": await self.present(op, list(run.records.values()))},
            )
        self._running[op.id] = op
        try:
            outcome = await run.execute()
        finally:
            del self._running[op.id]
        if outcome.suspended:
            log.info("run suspended", extra={"operation_id": op.id})
            return
        conclusion = kind.conclude(op, outcome, run.records)
        status = conclusion.status
        done = _finished_view(op, status, conclusion.result, conclusion.error)
        if status in ("succeeded", "partial"):
            event: tuple[str, dict[str, Any]] = (
                "result",
                {"operation": await self.present(done, list(run.records.values()))},
            )
        else:
            event = ("error", ErrorInfo.of_record(conclusion.error).record())
        await run.finish(
            status,
            result=conclusion.result,
            error=conclusion.error,
            event=event,
        )
        fields: dict[str, Any] = {
            "operation_id": op.id, "user_id": op.user_id, "kind": op.kind, "outcome": status,
            "duration_ms": round((time.perf_counter() - started) * 1000),
        }
        if conclusion.error is not None:
            fields.update(ErrorInfo.of_record(conclusion.error).log_fields())
        log.info("operation finished", extra=fields)
        if self._on_finished is not None:
            self._on_finished(op, status)

    async def _spare_slot(self, operation: Operation) -> ratelimit.Slot | None:
        """A slot for a run taken over from an owner that is gone (whose slot expires with
        its lease), when one is free. The run was admitted when it was created, so it goes
        on without one when the user's slots are all held or the limiter is unreachable."""
        if self._slot_for is None or operation.is_finished:
            return None
        try:
            return await self._slot_for(operation)
        except ratelimit.RateLimitError:
            log.info("run taken over without a concurrency slot",
                     extra={"operation_id": operation.id})
            return None

    # -- cancel and shutdown ------------------------------------------------------------

    async def cancel(self, operation: Operation) -> None:
        """Ask the owner (here or on another instance) to stop starting paid work."""
        if operation.is_finished:
            return
        await self.store.request_cancel(operation.id)
        run = self._runs.get(operation.id)
        if run is not None:
            run.cancel()
        else:
            await self.take_over_if_orphaned(operation)

    async def shutdown(self, grace_s: float) -> None:
        """Take no new runs; let each run checkpoint its current step, then release."""
        self.accepting = False
        for run in list(self._runs.values()):
            run.suspend()
        tasks = list(self._tasks.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)

    # -- following ----------------------------------------------------------------------

    def running_here(self, operation_id: str) -> Operation | None:
        """The operation while this process runs its steps (it holds the lease; the run
        has not started to finish): unfinished, owned, no database read needed. Its
        mutable fields are as they were when the run started."""
        return self._running.get(operation_id)

    async def follow(self, operation_id: str, after: int) -> AsyncIterator[Event]:
        """Events after `after`, live, until the operation's final terminal event."""
        async for events in self.follow_batches(operation_id, after):
            for event in events:
                yield event

    async def follow_batches(self, operation_id: str, after: int) -> AsyncIterator[list[Event]]:
        """`follow`, in the batches the log is read in: what was already logged at once,
        then what each wake-up finds (never an empty batch)."""
        cursor = after
        while True:
            events = await self.store.wait_for_events(operation_id, cursor, FOLLOW_CHECK_S)
            if events:
                yield events
                cursor = events[-1].seq
            if events and events[-1].type not in TERMINAL_EVENTS:
                continue
            if operation_id in self._running:
                continue  # unfinished and owned here: nothing to check
            op = await self.store.get_operation(operation_id)
            if op.is_finished and op.last_seq <= cursor:
                return
            await self.take_over_if_orphaned(op)

    async def wait_until_finished(self, operation_id: str, timeout: float) -> Ended | None:
        """The finished operation, or None when it is still running after `timeout`.

        A run of this process is waited for directly rather than by reading its event log
        as it grows, and when it finished the operation, the answer is what it wrote (no
        read); one that ended unfinished (suspended, crashed, taken over) or runs
        elsewhere is followed through its log, which takes it over once orphaned."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                run = self._tasks.get(operation_id)
                if run is not None:
                    await asyncio.wait([run])  # waiting, never cancelling the run
                    if not run.cancelled() and (ended := run.result()) is not None:
                        return ended
                    op = await self.store.get_operation(operation_id)
                    if op.is_finished:
                        return Ended(op)
                async for _event in self.follow(operation_id, 0):
                    pass
        op = await self.store.get_operation(operation_id)
        return Ended(op) if op.is_finished else None


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _finished_view(
    op: Operation, status: OperationStatus, result: Any, error: Any
) -> Operation:
    return dataclasses.replace(op, status=status, result=result, error=error)
