"""The checkpoint store: operations, leases, step checkpoints and the event log.

Every write of a runner is *fenced*: it names the lease token it holds, and the database
refuses it (`LeaseLost`) once a newer owner took the operation over. On PostgreSQL each
fenced write — operation row, step row, event and its NOTIFY — is one statement in one
round trip; on SQLite it is one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._engine import SQLITE_AUTOCOMMIT, create_engine
from ._errors import IdempotencyKeyReused, LeaseLost, LeaseUnavailable, OperationNotFound
from ._event_cache import EventCache
from ._models import (
    JSON,
    TERMINAL_STATUSES,
    Event,
    Lease,
    Operation,
    OperationStatus,
    StepRecord,
    StepStatus,
    canonical_json,
    input_hash,
)
from ._notify import PgListener, Waiters
from ._pg_write import pg_write_statement
from ._rows import aware, operation_of, step_of
from ._schema import metadata, operation_events, operation_steps, operations

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Written:
    """What a fenced write tells its writer."""

    seq: int | None  # the event's sequence number, when the write appended one
    cancel_requested: bool  # someone asked to cancel the operation


@dataclass(frozen=True, slots=True)
class _StepWrite:
    key: str
    position: int
    status: StepStatus
    attempts: int
    output: JSON | None
    error: Mapping[str, Any] | None
    started_at: datetime | None
    finished_at: datetime | None


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
        self._is_pg = engine.dialect.name == "postgresql"
        self._dispose_engine = dispose_engine
        if self._is_pg:
            self._single = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._single = engine.execution_options(**{SQLITE_AUTOCOMMIT: True})
        self._waiters = Waiters()
        self._events = EventCache()
        self._listener: PgListener | None = None
        if self._is_pg and listen:
            dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._listener = PgListener(dsn, self._waiters)
        self._poll_interval = poll_interval or (2.0 if self._is_pg else 0.1)
        self._fallback_poll = 0.25  # PostgreSQL while the LISTEN connection is down

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> CheckpointStore:
        """A store with an engine of its own, disposed by `close()`."""
        return cls(create_engine(url), dispose_engine=True, **kwargs)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
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
    ) -> tuple[Operation, bool]:
        """Create an operation, or find the one this user made with `idempotency_key`.

        Returns the operation and whether it was created now. The same key with another
        kind or input raises `IdempotencyKeyReused`. Concurrent calls with one key create
        exactly one row.
        """
        now = self.now()
        digest = input_hash({"kind": kind, "input": input})
        row = {
            "id": operation_id or str(uuid.uuid4()),
            "user_id": user_id,
            "kind": kind,
            "status": "pending",
            "input": input,
            "input_hash": digest,
            "idempotency_key": idempotency_key,
            "created_at": now,
            "updated_at": now,
        }
        if idempotency_key is None:
            async with self._single.connect() as conn:
                await conn.execute(operations.insert().values(row))
                await conn.commit()
            return await self.get_operation(row["id"]), True
        dialect = postgresql if self._is_pg else sqlite
        stmt = (
            dialect.insert(operations)
            .values(row)
            .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
            .returning(operations.c.id)
        )
        async with self._single.connect() as conn:
            created = (await conn.execute(stmt)).first() is not None
            await conn.commit()
        existing = await self.find_operation(user_id, idempotency_key)
        if existing is None:  # deleted by retention between the two statements
            raise OperationNotFound(row["id"])
        if existing.input_hash != digest:
            raise IdempotencyKeyReused(idempotency_key, existing.id)
        return existing, created

    async def get_operation(self, operation_id: str, *, user_id: str | None = None) -> Operation:
        """The operation; with `user_id`, only when it belongs to that user."""
        stmt = sa.select(operations).where(operations.c.id == operation_id)
        if user_id is not None:
            stmt = stmt.where(operations.c.user_id == user_id)
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
        if row is None:
            raise OperationNotFound(operation_id)
        return operation_of(row)

    async def find_operation(self, user_id: str, idempotency_key: str) -> Operation | None:
        stmt = sa.select(operations).where(
            operations.c.user_id == user_id, operations.c.idempotency_key == idempotency_key
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else operation_of(row)

    async def request_cancel(self, operation_id: str) -> bool:
        """Ask the owner of an unfinished operation to stop; False when it has finished.

        The owner learns of it from the answer of its next write, on any instance.
        """
        stmt = (
            operations.update()
            .where(
                operations.c.id == operation_id,
                operations.c.status.not_in(TERMINAL_STATUSES),
            )
            .values(cancel_requested=True, updated_at=self.now())
            .returning(operations.c.id)
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        return row is not None

    # -- leases -------------------------------------------------------------------------

    async def acquire_lease(self, operation_id: str, owner: str, ttl: float) -> Lease:
        """Take the operation when nobody holds it or its holder's lease expired.

        The new token is larger than every earlier one, so writes of an earlier owner are
        refused from now on. Raises `LeaseUnavailable` or `OperationNotFound`.
        """
        now = self._clock()
        expires_at = now + ttl
        stmt = (
            operations.update()
            .where(
                operations.c.id == operation_id,
                sa.or_(
                    operations.c.lease_owner.is_(None),
                    operations.c.lease_expires_at.is_(None),
                    operations.c.lease_expires_at <= now,
                ),
            )
            .values(
                lease_token=operations.c.lease_token + 1,
                lease_owner=owner,
                lease_expires_at=expires_at,
            )
            .returning(operations.c.lease_token)
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        if row is None:
            current = await self.get_operation(operation_id)
            raise LeaseUnavailable(operation_id, current.lease_owner, current.lease_expires_at)
        return Lease(operation_id, owner, int(row[0]), expires_at)

    async def renew_lease(self, lease: Lease, ttl: float) -> Lease:
        expires_at = self._clock() + ttl
        stmt = (
            operations.update()
            .where(operations.c.id == lease.operation_id, operations.c.lease_token == lease.token)
            .values(lease_expires_at=expires_at)
            .returning(operations.c.id)
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        if row is None:
            raise LeaseLost(lease.operation_id, lease.token)
        return Lease(lease.operation_id, lease.owner, lease.token, expires_at)

    async def release_lease(self, lease: Lease) -> bool:
        """Give the operation up; False when a newer owner already holds it."""
        stmt = (
            operations.update()
            .where(operations.c.id == lease.operation_id, operations.c.lease_token == lease.token)
            .values(lease_owner=None, lease_expires_at=None)
            .returning(operations.c.id)
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        return row is not None

    # -- steps --------------------------------------------------------------------------

    async def plan_steps(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord]:
        """Record the planned steps (new ones `pending`, known ones untouched) and return
        every step of the operation in plan order."""
        dialect = postgresql if self._is_pg else sqlite
        async with self.engine.begin() as conn:
            await self._fence(conn, lease)
            if keys:
                rows = [
                    {"operation_id": lease.operation_id, "key": key, "position": i,
                     "status": "pending", "attempts": 0}
                    for i, key in enumerate(keys)
                ]
                await conn.execute(
                    dialect.insert(operation_steps)
                    .values(rows)
                    .on_conflict_do_update(
                        index_elements=["operation_id", "key"],
                        set_={"position": dialect.insert(operation_steps).excluded.position},
                    )
                )
        return await self.get_steps(lease.operation_id)

    async def reset_steps(self, lease: Lease, keys: Sequence[str]) -> list[StepRecord]:
        """Set steps back to `pending` so the next execution runs them again (e.g. the
        bookkeeping steps of a resumed operation); returns every step in plan order."""
        async with self.engine.begin() as conn:
            await self._fence(conn, lease)
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
        stmt = (
            sa.select(operation_steps)
            .where(operation_steps.c.operation_id == operation_id)
            .order_by(operation_steps.c.position, operation_steps.c.key)
        )
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [step_of(row) for row in rows]

    async def record_step(
        self,
        lease: Lease,
        step: StepRecord,
        *,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> Written:
        """Write a step's state (and optionally an event) under the lease, atomically."""
        write = _StepWrite(
            step.key, step.position, step.status, step.attempts, step.output, step.error,
            step.started_at, step.finished_at,
        )
        return await self._write(lease, step=write, event=event)

    # -- events -------------------------------------------------------------------------

    async def append_event(
        self, fence: Lease | str, type: str, data: Mapping[str, Any]
    ) -> Written:
        """Append an event under a lease, or unfenced to the operation with that id.

        Sequence numbers start at 1 and have no gaps or duplicates, whatever the number
        of concurrent appenders."""
        if isinstance(fence, Lease):
            return await self._write(fence, event=(type, data))
        return await self._write(None, operation_id=fence, event=(type, data))

    async def read_events(
        self, operation_id: str, after: int = 0, *, limit: int = 1000
    ) -> list[Event]:
        """Events after `after`, in order; replays come from the in-process cache."""
        return await self._events.read(
            operation_id, after, limit,
            lambda start, count: self._fetch_events(operation_id, start, count),
        )

    async def _fetch_events(self, operation_id: str, after: int, limit: int) -> list[Event]:
        stmt = (
            sa.select(operation_events)
            .where(operation_events.c.operation_id == operation_id, operation_events.c.seq > after)
            .order_by(operation_events.c.seq)
            .limit(limit)
        )
        async with self._single.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Event(row.seq, row.type, row.data, aware(row.created_at)) for row in rows]

    async def wait_for_events(
        self, operation_id: str, after: int, timeout: float, *, limit: int = 1000
    ) -> list[Event]:
        """Events after `after`, waiting up to `timeout` seconds for the first one.

        Woken by NOTIFY on PostgreSQL (any process), by this store's own writes, and by a
        periodic re-read that covers SQLite and a lost LISTEN connection.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            woken = self._waiters.register(operation_id)
            try:
                listening = (
                    self._listener is not None and await self._listener.ensure_connected()
                )
                events = await self.read_events(operation_id, after, limit=limit)
                remaining = deadline - loop.time()
                if events or remaining <= 0:
                    return events
                interval = self._poll_interval
                if self._listener is not None and not listening:
                    interval = self._fallback_poll
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, interval))
            finally:
                self._waiters.unregister(operation_id, woken)

    # -- terminal state -----------------------------------------------------------------

    async def set_status(self, lease: Lease, status: OperationStatus) -> Written:
        """Set a non-terminal status (e.g. `running`) under the lease; a finished
        operation set back to `running` (a resume) loses its result and error."""
        if status in TERMINAL_STATUSES:
            raise ValueError("use finish_operation for a terminal status")
        return await self._write(lease, status=status, reopen=True)

    async def finish_operation(
        self,
        lease: Lease,
        status: OperationStatus,
        *,
        result: JSON | None = None,
        error: Mapping[str, Any] | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> Written:
        """Store the terminal status, result or error and (optionally) the terminal event
        in one atomic write under the lease, which it also releases."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"{status!r} is not a terminal status")
        return await self._write(
            lease, status=status, result=result, error=error, finished=True, event=event
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
            self._events.forget(ids)
            deleted += len(ids)

    # -- the one write path -------------------------------------------------------------

    async def _fence(self, conn: AsyncConnection, lease: Lease) -> None:
        row = (
            await conn.execute(
                sa.select(operations.c.id)
                .where(
                    operations.c.id == lease.operation_id,
                    operations.c.lease_token == lease.token,
                )
                .with_for_update()
            )
        ).first()
        if row is None:
            raise LeaseLost(lease.operation_id, lease.token)

    async def _write(
        self,
        lease: Lease | None,
        *,
        operation_id: str | None = None,
        status: OperationStatus | None = None,
        result: JSON | None = None,
        error: Mapping[str, Any] | None = None,
        finished: bool = False,
        reopen: bool = False,
        step: _StepWrite | None = None,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> Written:
        op_id = lease.operation_id if lease is not None else operation_id
        now = self.now()
        sets: dict[str, Any] = {"updated_at": now}
        if status is not None:
            sets["status"] = status
        if finished or reopen:
            sets.update(result=result, error=error, finished_at=now if finished else None)
        if finished:
            # Free the operation in the same write: a resume right after the terminal
            # event must not find it still leased by the run that is winding down.
            sets.update(lease_owner=None, lease_expires_at=None)
        if self._is_pg:
            written = await self._write_pg(lease, op_id, sets, step, event, now)
        else:
            written = await self._write_sqlite(lease, op_id, sets, step, event, now)
        if event is not None:
            self._waiters.wake(cast(str, op_id))
        return written

    async def _write_pg(
        self,
        lease: Lease | None,
        op_id: str | None,
        sets: dict[str, Any],
        step: _StepWrite | None,
        event: tuple[str, Mapping[str, Any]] | None,
        now: datetime,
    ) -> Written:
        params: dict[str, Any] = {"op_id": op_id, "now": now}
        if lease is not None:
            params["token"] = lease.token
        for name in ("status", "finished_at", "lease_owner", "lease_expires_at"):
            if name in sets:
                params[f"op_{name}"] = sets[name]
        for name in ("result", "error"):
            if name in sets:
                params[f"op_{name}"] = _json_or_none(sets[name])
        if step is not None:
            params.update(
                s_key=step.key, s_position=step.position, s_status=step.status,
                s_attempts=step.attempts, s_output=_json_or_none(step.output),
                s_error=_json_or_none(step.error), s_started_at=step.started_at,
                s_finished_at=step.finished_at,
            )
        if event is not None:
            params.update(e_type=event[0], e_data=canonical_json(dict(event[1])))
        stmt = pg_write_statement(
            fenced=lease is not None,
            op_columns=tuple(sorted(name for name in sets if name != "updated_at")),
            with_step=step is not None,
            with_event=event is not None,
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt, params)).first()
        if row is None:
            if lease is not None:
                raise LeaseLost(lease.operation_id, lease.token)
            raise OperationNotFound(cast(str, op_id))
        return Written(row.seq, bool(row.cancel_requested))

    async def _write_sqlite(
        self,
        lease: Lease | None,
        op_id: str | None,
        sets: dict[str, Any],
        step: _StepWrite | None,
        event: tuple[str, Mapping[str, Any]] | None,
        now: datetime,
    ) -> Written:
        where = [operations.c.id == op_id]
        if lease is not None:
            where.append(operations.c.lease_token == lease.token)
        if event is not None:
            sets = {**sets, "event_seq": operations.c.event_seq + 1}
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    operations.update()
                    .where(*where)
                    .values(sets)
                    .returning(operations.c.event_seq, operations.c.cancel_requested)
                )
            ).first()
            if row is None:
                if lease is not None:
                    raise LeaseLost(lease.operation_id, lease.token)
                raise OperationNotFound(cast(str, op_id))
            if step is not None:
                values = {
                    "operation_id": op_id, "key": step.key, "position": step.position,
                    "status": step.status, "attempts": step.attempts, "output": step.output,
                    "error": step.error, "started_at": step.started_at,
                    "finished_at": step.finished_at,
                }
                insert = sqlite.insert(operation_steps).values(values)
                await conn.execute(
                    insert.on_conflict_do_update(
                        index_elements=["operation_id", "key"],
                        set_={
                            name: insert.excluded[name]
                            for name in ("status", "attempts", "output", "error",
                                         "started_at", "finished_at")
                        },
                    )
                )
            seq = None
            if event is not None:
                seq = int(row.event_seq)
                await conn.execute(
                    operation_events.insert().values(
                        operation_id=op_id, seq=seq, type=event[0], data=dict(event[1]),
                        created_at=now,
                    )
                )
        return Written(seq, bool(row.cancel_requested))


def _json_or_none(value: JSON | None) -> str | None:
    return None if value is None else canonical_json(value)
