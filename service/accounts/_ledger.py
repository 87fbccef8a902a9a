"""The operations' credit ledger, shared by both books: each movement of an operation's
net charge is one entry, named by its idempotency key.

Keys are a pure function of the operation and its ledger so far: the first increase is
`op:{id}:reserve`, the first decrease `op:{id}:refund`, later ones `…:reserve:2`,
`…:refund:2` (a resumed operation settles again). A step replayed after a crash sees
the entry its first run committed and moves nothing; one whose first run did not commit
uses the same key again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Entries:
    """An operation's ledger entries: their names and their net charge."""

    names: Sequence[str]
    charged: int

    def key_for(self, operation_id: str, change: int) -> str:
        """The idempotency key of the next movement of `change` credits."""
        base = f"op:{operation_id}:{'reserve' if change > 0 else 'refund'}"
        earlier = sum(1 for name in self.names if name == base or name.startswith(f"{base}:"))
        return base if earlier == 0 else f"{base}:{earlier + 1}"


async def entries_of(conn: AsyncConnection, ledger: sa.Table, operation_id: str) -> Entries:
    rows = (
        await conn.execute(
            sa.select(ledger.c.entry, ledger.c.delta).where(ledger.c.operation_id == operation_id)
        )
    ).all()
    # Ledger deltas are negative for charges.
    return Entries([row.entry for row in rows], -sum(int(row.delta) for row in rows))
