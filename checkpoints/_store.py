"""The checkpoint store: operations, leases, step checkpoints and the event log.

Every write of a runner is *fenced*: it names the lease token it holds, and the database
refuses it (`LeaseLost`) once a newer owner took the operation over. Each fenced write —
operation row, step row, event (and on PostgreSQL its NOTIFY) — is one statement: one
round trip on PostgreSQL (`_pg_write.py`), one implicit transaction through a trigger on
SQLite (`_sqlite_write.py`). The rest of the operations' rows is `_operation_rows.py`'s,
the leases live in `_leases.py`, the followers' reads and waits of the
event log in `_event_feed.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ._engine import autocommit, create_engine
from ._errors import LeaseLost, LeaseUnavailable, OperationNotFound
from ._event_feed import EventFeed
from ._leases import Leases, hold_lease
from ._models import (
    JSON,
    TERMINAL_STATUSES,
    Event,
    Lease,
    Operation,
    OperationStatus,
    StepRecord,
)
from ._operation_rows import OperationRows
from ._pg_write import PgWrites
from ._rows import step_of
from ._schema import metadata, operation_events, operation_steps, operations
from ._shared_reads import SharedReads
from ._sqlite_write import SqliteWrites
from ._write import DialectWrites, FencedWrite, Written

Clock = Callable[[], float]

# The steps' read, built once (as the operations' reads in `_operation_rows.py`).
_STEPS = (
    sa.select(operation_steps)
    .where(operation_steps.c.operation_id == sa.bindparam("operation_id"))
    .order_by(operation_steps.c.position, operation_steps.c.key)
)


class CheckpointStore:
    """Durable operations, step checkpoints and event logs on PostgreSQL or SQLite."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Clock = time.time,
        poll_interval: float | None = None,
        listen: bool = True,
        dispose_engine: bool = False,
    ) -> None:
        """`poll_interval`: how often followers re-read without a notification
        (default 0.1 s on SQLite, 2 s on PostgreSQL as a safety net behind LISTEN)."""
        self.engine = engine
        self._clock = clock
        self._dispose_engine = dispose_engine
        self._single = autocommit(engine)
        self._writes: DialectWrites = (
            PgWrites(self._single)
            if engine.dialect.name == "postgresql"
            else SqliteWrites(self._single)
        )
        self._rows = OperationRows(self._single, self._writes, clock, self.now)
        self._leases = Leases(self._single)
        self._feed = EventFeed(self._single, listen=listen, poll_interval=poll_interval)
        self._operation_reads = SharedReads(self._rows.read)

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> CheckpointStore:
        """A store with an engine of its own, disposed by `close()`."""
        return cls(create_engine(url), dispose_engine=True, **kwargs)

    async def close(self) -> None:
        await self._feed.close()
        if self._dispose_engine:
            await self.engine.dispose()

    async def create_schema(self) -> None:
        """Create the tables directly (for library use; the service uses its migrations)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    def now(self) -> datetime:
        """The store's clock as an aware UTC datetime."""
        return datetime.fromtimestamp(self._clock(), tz=UTC)

    # -- operations ---------------------------------------------------------------------

    async def create_operation(
        self,
        *,
        user_id: str,
        kind: str,
        input: JSON,
        idempotency_key: str | None = None,
        operation_id: str | None = None,
        owner: str | None = None,
        ttl: float | None = None,
    ) -> tuple[Operation, bool]:
        """Create an operation, or find the one this user made with `idempotency_key`.

        Returns the operation and whether it was created now. The same key with another
        kind or input raises `IdempotencyKeyReused`. Concurrent calls with one key create
        exactly one row. With `owner` (and `ttl`), an operation created now is created
        leased to that owner (its first lease, see `lease_of`): its run needs no
        `take_operation`.
        """
        return await self._rows.create(
            user_id=user_id, kind=kind, input=input, idempotency_key=idempotency_key,
            operation_id=operation_id, owner=owner, ttl=ttl,
        )

    async def get_operation(self, operation_id: str, *, user_id: str | None = None) -> Operation:
        """The operation; with `user_id`, only when it belongs to that user.

        Concurrent reads of one operation share a query (see `_shared_reads`), each still
        seeing the row as it was after it asked."""
        op = await self._operation_reads.get(operation_id)
        if user_id is not None and op.user_id != user_id:
            raise OperationNotFound(operation_id)
        return op

    async def find_operation(self, user_id: str, idempotency_key: str) -> Operation | None:
        return await self._rows.find(user_id, idempotency_key)

    async def orphaned(self, *, idle_for: float, limit: int = 50) -> list[str]:
        """Unfinished operations nobody holds: their owner's lease has expired, or no lease
        was taken for `idle_for` seconds (a run that crashed, was suspended at a shutdown,
        or never started). Longest expired first."""
        return await self._rows.orphaned(idle_for=idle_for, limit=limit)

    async def request_cancel(self, operation_id: str) -> bool:
        """Ask the owner of an unfinished operation to stop; False when it has finished.

        The owner learns of it from the answer of its next write, on any instance.
        """
        return await self._rows.request_cancel(operation_id)

    # -- leases -------------------------------------------------------------------------

    async def acquire_lease(self, operation_id: str, owner: str, ttl: float) -> Lease:
        """Take the operation when nobody holds it or its holder's lease expired.

        The new token is larger than every earlier one, so writes of an earlier owner are
        refused from now on. Raises `LeaseUnavailable` or `OperationNotFound`.
        """
        lease, _ = await self.take_operation(operation_id, owner, ttl)
        return lease

    async def take_operation(
        self, operation_id: str, owner: str, ttl: float
    ) -> tuple[Lease, Operation]:
        """`acquire_lease`, and the operation as the acquisition left it (one statement)."""
        now = self._clock()
        taken = await self._leases.take(operation_id, owner, now, now + ttl)
        if taken is None:
            current = await self.get_operation(operation_id)
            raise LeaseUnavailable(operation_id, current.lease_owner, current.lease_expires_at)
        return taken

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        return await self._leases.renew(lease, self._clock() + ttl)

    async def release_lease(self, lease: Lease) -> bool:
        """Give the operation up; False when a newer owner already holds it."""
        return await self._leases.release(lease)

    # -- steps --------------------------------------------------------------------------

    async def plan_steps(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord]:
        """Record the planned steps (new ones `pending`, known ones untouched but for
        their position) and return them in plan order, in one statement. Rows of steps
        outside the plan (an earlier version's plan) are left alone and not returned."""
        if not keys:
            async with self.engine.begin() as conn:
                await hold_lease(conn, lease)
            return []
        steps = await self._writes.plan(lease, keys)
        if steps is None:
            raise LeaseLost(lease.operation_id, lease.token)
        return steps

    async def reset_steps(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord]:
        """Set steps back to `pending` so the next execution runs them again (e.g. the
        bookkeeping steps of a resumed operation); returns every step in plan order."""
        async with self.engine.begin() as conn:
            await hold_lease(conn, lease)
            await conn.execute(
                operation_steps.update()
                .where(
                    operation_steps.c.operation_id == lease.operation_id,
                    operation_steps.c.key.in_(keys),
                )
                .values(status="pending", output=None, error=None, finished_at=None)
            )
        return await self.get_steps(lease.operation_id)

    async def get_steps(self, operation_id: str) -> list[StepRecord]:
        async with self._single.connect() as conn:
            rows = (await conn.execute(_STEPS, {"operation_id": operation_id})).all()
        return [step_of(row) for row in rows]

    async def record_step(
        self,
        lease: Lease,
        step: StepRecord,
        *,
        event: tuple[str, Mapping[str, Any]] | None = None,
        then: tuple[StepRecord, tuple[str, Mapping[str, Any]]] | None = None,
        then_unless_cancelled: bool = False,
    ) -> Written:
        """Write a step's state (and optionally an event) under the lease, atomically.

        `then` is a second step state and event written after the first (the next step's
        start, after a step's completion), in the same statement. With
        `then_unless_cancelled` it is left out when someone asked to cancel the
        operation; `Written.then_written` tells which happened.
        """
        return await self._write(
            lease, step=step, event=event, then=then, then_unless_cancelled=then_unless_cancelled
        )

    # -- events -------------------------------------------------------------------------

    async def append_event(
        self, fence: Lease | str, type: str, data: Mapping[str, Any]
    ) -> Written:
        """Append an event under a lease, or unfenced to the operation with that id.

        Sequence numbers start at 1 and have no gaps or duplicates, whatever the number
        of concurrent appenders."""
        return await self._write(fence, event=(type, data))

    async def read_events(
        self, operation_id: str, after: int = 0, *, limit: int = 1000
    ) -> list[Event]:
        """Events after `after`, in order; replays come from the in-process cache."""
        return await self._feed.read(operation_id, after, limit)

    async def wait_for_events(
        self, operation_id: str, after: int, timeout: float, *, limit: int = 1000
    ) -> list[Event]:
        """Events after `after`, waiting up to `timeout` seconds for the first one.

        Woken by NOTIFY on PostgreSQL (any process), by this store's own writes, and by a
        periodic re-read that covers SQLite and a lost LISTEN connection.
        """
        return await self._feed.wait(operation_id, after, timeout, limit)

    # -- terminal state -----------------------------------------------------------------

    async def set_status(
        self,
        lease: Lease,
        status: OperationStatus,
        *,
        event: tuple[str, Mapping[str, Any]] | None = None,
        at: datetime | None = None,
        then: tuple[StepRecord, tuple[str, Mapping[str, Any]]] | None = None,
        then_unless_cancelled: bool = False,
    ) -> Written:
        """Set a non-terminal status (e.g. `running`) under the lease, optionally with an
        event in the same write; a finished operation set back to `running` (a resume)
        loses its result and error. `at`: the operation's new `updated_at` (default now),
        e.g. the time a snapshot in `event` shows. `then`: a step's state and event
        written after them (the first step's start), as in `record_step`."""
        if status in TERMINAL_STATUSES:
            raise ValueError("use finish_operation for a terminal status")
        return await self._write(lease, status=status, reopen=True, event=event, now=at,
                                 then=then, then_unless_cancelled=then_unless_cancelled)

    async def finish_operation(
        self,
        lease: Lease,
        status: OperationStatus,
        *,
        result: JSON | None = None,
        error: Mapping[str, Any] | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
        at: datetime | None = None,
        after: tuple[StepRecord, tuple[str, Mapping[str, Any]]] | None = None,
    ) -> Written:
        """Store the terminal status, result or error and (optionally) the terminal event
        in one atomic write under the lease, which it also releases. `at`: the
        operation's `finished_at` and `updated_at` (default now). `after`: a step's state
        and event written before them (the last step's completion)."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        if after is not None:
            step, step_event = after
            return await self._write(
                lease, status=status, result=result, error=error, finished=True, now=at,
                step=step, event=step_event, then=None if event is None else (None, event),
            )
        return await self._write(
            lease, status=status, result=result, error=error, finished=True, event=event,
            now=at,
        )

    # -- retention ----------------------------------------------------------------------

    async def prune(self, older_than: timedelta, *, batch: int = 500) -> int:
        """Delete finished operations older than `older_than`, with their steps and events.
        Returns how many operations were deleted."""
        cutoff = self.now() - older_than
        deleted = 0
        while True:
            async with self.engine.begin() as conn:
                ids = (
                    await conn.execute(
                        sa.select(operations.c.id)
                        .where(
                            operations.c.status.in_(TERMINAL_STATUSES),
                            operations.c.finished_at < cutoff,
                        )
                        .limit(batch)
                    )
                ).scalars().all()
                if not ids:
                    return deleted
                await conn.execute(
                    operation_events.delete().where(operation_events.c.operation_id.in_(ids))
                )
                await conn.execute(
                    operation_steps.delete().where(operation_steps.c.operation_id.in_(ids))
                )
                await conn.execute(operations.delete().where(operations.c.id.in_(ids)))
            self._feed.forget(ids)
            deleted += len(ids)

    # -- the one write path -------------------------------------------------------------

    async def _write(
        self,
        fence: Lease | str,
        *,
        status: OperationStatus | None = None,
        result: JSON | None = None,
        error: Mapping[str, Any] | None = None,
        finished: bool = False,
        reopen: bool = False,
        step: StepRecord | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
        then: tuple[StepRecord | None, tuple[str, Mapping[str, Any]]] | None = None,
        then_unless_cancelled: bool = False,
        now: datetime | None = None,
    ) -> Written:
        """Write under `fence`: a lease, or an operation id for an unfenced event."""
        now = now or self.now()
        sets: dict[str, Any] = {"updated_at": now}
        if status is not None:
            sets["status"] = status
        if finished or reopen:
            sets.update(result=result, error=error, finished_at=now if finished else None)
        if finished:
            # Free the operation in the same write: a resume right after the terminal
            # event must not find it still leased by the run that is winding down.
            sets.update(lease_owner=None, lease_expires_at=None)
        if isinstance(fence, Lease):
            operation_id, token = fence.operation_id, fence.token
        else:
            operation_id, token = fence, None
        written = await self._writes.write(
            FencedWrite(operation_id, token, sets, step, event, now, then, then_unless_cancelled)
        )
        if written.seq is not None:
            self._feed.appended(operation_id)
        return written
