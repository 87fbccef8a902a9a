"""Leases with fencing tokens: who may write an operation.

Every acquisition increments the operation's `lease_token`, so a writer that still holds
an earlier token is refused from then on (`LeaseLost`), whatever it believes about the
expiry of its lease.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ._errors import LeaseLost
from ._models import Lease, Operation
from ._rows import operation_of
from ._schema import operations


class Leases:
    """The lease columns of the operations table."""

    def __init__(self, single: AsyncEngine) -> None:
        """`single`: the store's engine for single statements."""
        self._single = single

    async def take(
        self, operation_id: str, owner: str, now: float, expires_at: float
    ) -> tuple[Lease, Operation] | None:
        """A new lease, and the operation as taking it left it, when nobody holds the
        operation or its holder's lease expired by `now`; None otherwise, and when there
        is no such operation."""
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
            .returning(*operations.c)
        )
        row = await self._first(stmt)
        if row is None:
            return None
        return Lease(operation_id, owner, int(row.lease_token), expires_at), operation_of(row)

    async def renew(self, lease: Lease, expires_at: float) -> Lease:
        """The lease until `expires_at`; `LeaseLost` when a newer owner holds it."""
        row = await self._first(
            _held(lease).values(lease_expires_at=expires_at).returning(operations.c.id)
        )
        if row is None:
            raise LeaseLost(lease.operation_id, lease.token)
        return Lease(lease.operation_id, lease.owner, lease.token, expires_at)

    async def release(self, lease: Lease) -> bool:
        """Give the operation up; False when a newer owner already holds it."""
        row = await self._first(
            _held(lease).values(lease_owner=None, lease_expires_at=None)
            .returning(operations.c.id)
        )
        return row is not None

    async def _first(self, stmt: sa.Executable) -> sa.Row[Any] | None:
        async with self._single.connect() as conn:
            row = (await conn.execute(stmt)).first()
            await conn.commit()
        return row


async def hold_lease(conn: AsyncConnection, lease: Lease) -> None:
    """Lock the operation's row for the rest of `conn`'s transaction while `lease` is
    current; `LeaseLost` when a newer owner holds it."""
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


def _held(lease: Lease) -> sa.Update:
    """An update of the operation's row that applies only while `lease` is current."""
    return operations.update().where(
        operations.c.id == lease.operation_id, operations.c.lease_token == lease.token
    )
