"""SQLite's writes: its INSERT, and each fenced write as one `BEGIN IMMEDIATE` transaction
(see `_engine.py`), which queues concurrent writers, also those of other processes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._models import StepRecord
from ._schema import operation_events, operation_steps, operations
from ._write import FencedWrite, Written


class SqliteWrites:
    """The store's dialect-specific writes on SQLite."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    async def write(self, write: FencedWrite) -> Written:
        where = [operations.c.id == write.operation_id]
        if write.token is not None:
            where.append(operations.c.lease_token == write.token)
        sets: dict[str, Any] = dict(write.sets)
        if write.event is not None:
            sets["event_seq"] = operations.c.event_seq + 1
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    operations.update()
                    .where(*where)
                    .values(sets)
                    .returning(operations.c.event_seq, operations.c.cancel_requested)
                )
            ).first()
            if row is None:
                raise write.refused()
            if write.step is not None:
                await _upsert_step(conn, write.operation_id, write.step)
            seq = None
            if write.event is not None:
                # The operation's row handed out this number under the transaction's lock.
                seq = int(row.event_seq)
                await conn.execute(
                    operation_events.insert().values(
                        operation_id=write.operation_id, seq=seq, type=write.event[0],
                        data=dict(write.event[1]), created_at=write.now,
                    )
                )
        return Written(seq, bool(row.cancel_requested))


async def _upsert_step(conn: AsyncConnection, operation_id: str, step: StepRecord) -> None:
    insert = sqlite.insert(operation_steps).values(
        operation_id=operation_id, key=step.key, position=step.position, status=step.status,
        attempts=step.attempts, output=step.output, error=step.error,
        started_at=step.started_at, finished_at=step.finished_at,
    )
    await conn.execute(
        insert.on_conflict_do_update(
            index_elements=["operation_id", "key"],
            set_={
                name: insert.excluded[name]
                for name in ("status", "attempts", "output", "error", "started_at", "finished_at")
            },
        )
    )
