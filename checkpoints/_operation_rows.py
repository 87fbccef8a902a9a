"""The operations' rows: creating one (or finding its Idempotency-Key's), reading one,
finding the unfinished ones nobody holds, and asking for a cancel. The store's fenced
writes of a row are `_write`'s; its leases are `_leases`'."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ._errors import IdempotencyKeyReused, OperationNotFound
from ._models import JSON, TERMINAL_STATUSES, Operation, input_hash
from ._rows import operation_of
from ._schema import operations
from ._write import DialectWrites

# The hot reads, built once: a statement built per call costs more to build and to find
# in the compiled cache than to execute.
_OPERATION = sa.select(operations).where(operations.c.id == sa.bindparam("operation_id"))
_BY_KEY = sa.select(operations).where(
    operations.c.user_id == sa.bindparam("user_id"),
    operations.c.idempotency_key == sa.bindparam("idempotency_key"),
)
_INSERT = operations.insert().returning(*operations.c)


class OperationRows:
    """The operations table, through the store's engine for single statements."""

    def __init__(self, single: AsyncEngine, writes: DialectWrites,
                 clock: Callable[[], float], now: Callable[[], datetime]) -> None:
        """`clock`: the store's clock in seconds (leases); `now`: the same as a datetime."""
        self._single = single
        self._clock = clock
        self._now = now
        self._insert_new_key = (
            writes.insert(operations)
            .on_conflict_do_nothing(index_elements=["user_id", "idempotency_key"])
            .returning(*operations.c)
        )

    async def create(
        self, *, user_id: str, kind: str, input: JSON, idempotency_key: str | None,
        operation_id: str | None, owner: str | None, ttl: float | None,
    ) -> tuple[Operation, bool]:
        """See `CheckpointStore.create_operation`."""
        now = self._now()
        digest = input_hash({"kind": kind, "input": input})
        row: dict[str, Any] = {
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
        if owner is not None:
            if ttl is None or ttl <= 0:
                raise ValueError("a leased operation needs a positive ttl")
            row.update(lease_token=1, lease_owner=owner, lease_expires_at=self._clock() + ttl)
        if idempotency_key is None:
            async with self._single.connect() as conn:
                new = (await conn.execute(_INSERT, row)).one()
                await conn.commit()
            return operation_of(new), True
        async with self._single.connect() as conn:
            inserted = (await conn.execute(self._insert_new_key, row)).first()
            await conn.commit()
        if inserted is not None:
            return operation_of(inserted), True
        existing = await self.find(user_id, idempotency_key)
        if existing is None:  # deleted by retention between the two statements
            raise OperationNotFound(row["id"])
        if existing.input_hash != digest:
            raise IdempotencyKeyReused(idempotency_key, existing.id)
        return existing, False

    async def read(self, operation_id: str) -> Operation:
        async with self._single.connect() as conn:
            row = (await conn.execute(_OPERATION, {"operation_id": operation_id})).first()
        if row is None:
            raise OperationNotFound(operation_id)
        return operation_of(row)

    async def find(self, user_id: str, idempotency_key: str) -> Operation | None:
        params = {"user_id": user_id, "idempotency_key": idempotency_key}
        async with self._single.connect() as conn:
            row = (await conn.execute(_BY_KEY, params)).first()
        return None if row is None else operation_of(row)

    async def orphaned(self, *, idle_for: float, limit: int) -> list[str]:
        """See `CheckpointStore.orphaned`."""
        unheld_since = self._now() - timedelta(seconds=idle_for)
        stmt = (
            sa.select(operations.c.id)
            .where(
                operations.c.status.in_(["pending", "running"]),
                sa.or_(
                    operations.c.lease_expires_at < self._clock(),
                    sa.and_(operations.c.lease_expires_at.is_(None),
                            operations.c.updated_at < unheld_since),
                ),
            )
            .order_by(operations.c.lease_expires_at)
            .limit(limit)
        )
        async with self._single.connect() as conn:
            return list((await conn.execute(stmt)).scalars())

    async def request_cancel(self, operation_id: str) -> bool:
        """See `CheckpointStore.request_cancel`."""
        stmt = (
            operations.update()
            .where(
                operations.c.id == operation_id,
                operations.c.status.not_in(TERMINAL_STATUSES),
            )
            .values(cancel_requested=True, updated_at=self._now())
            .returning(operations.c.id)
        )
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        return row is not None
