"""One movement of an operation's charge as one statement: its ledger entry and the
account's balance together, atomically.

The balance never goes below zero because the `accounts` table refuses it (its CHECK
constraint), and an entry is never written twice because `(operation_id, entry)` is
unique: a statement that loses a race (a concurrent charge took the balance, or an
earlier owner of the operation wrote the same entry) fails as a whole with an
IntegrityError, and the caller reads again and decides again. No lock is held between
the read and the write.

PostgreSQL runs it as one statement with data-modifying CTEs. SQLite has none, so the
statement is an INSERT into a connection-local TEMP view, `credit_charge`, whose INSTEAD
OF trigger writes the entry and moves the balance (one implicit transaction, as the
checkpoint writes do); it is created on a connection the first time it charges.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_PG: Final = sa.text(
    "WITH moved AS (UPDATE accounts SET credits_remaining = credits_remaining "
    "- CAST(:increase AS integer), "
    "updated_at = :now WHERE user_id = :user_id RETURNING credits_remaining), "
    "entry AS (INSERT INTO credit_ledger (user_id, operation_id, entry, delta, created_at) "
    "SELECT CAST(:user_id AS varchar), CAST(:operation_id AS varchar), "
    "CAST(:entry AS varchar), -CAST(:increase AS integer), CAST(:now AS timestamptz) "
    "FROM moved) "
    "SELECT credits_remaining FROM moved"
)

_SQLITE_VIEW: Final = (
    "CREATE TEMP VIEW IF NOT EXISTS credit_charge "
    "(user_id, operation_id, entry, increase, now) "
    "AS SELECT NULL, NULL, NULL, NULL, NULL WHERE 0",
    "CREATE TEMP TRIGGER IF NOT EXISTS credit_charge_apply "
    "INSTEAD OF INSERT ON credit_charge BEGIN "
    "INSERT INTO credit_ledger (user_id, operation_id, entry, delta, created_at) "
    "SELECT NEW.user_id, NEW.operation_id, NEW.entry, -NEW.increase, NEW.now "
    "FROM accounts WHERE user_id = NEW.user_id; "
    "UPDATE accounts SET credits_remaining = credits_remaining - NEW.increase, "
    "updated_at = NEW.now WHERE user_id = NEW.user_id; END",
)
_SQLITE: Final = sa.text(
    "INSERT INTO credit_charge (user_id, operation_id, entry, increase, now) "
    "VALUES (:user_id, :operation_id, :entry, :increase, :now) "
    "RETURNING (SELECT credits_remaining FROM accounts WHERE user_id = :user_id)"
)
#: Marks a SQLite connection (its `info`) whose `credit_charge` view exists.
_INSTALLED: Final = "service.accounts.credit_charge"


class ChargeStatement:
    """The one-statement charge of an engine's dialect."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self._sqlite = dialect.name == "sqlite"
        processor = sa.DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        # SQLite's trigger writes timestamps as the text the column type reads back.
        self._time: Callable[[datetime], object] = (
            processor if self._sqlite and processor is not None else (lambda value: value)
        )

    async def apply(self, conn: AsyncConnection, *, user_id: str, operation_id: str,
                    entry: str, increase: int, now: datetime) -> int | None:
        """Write the entry and move the balance by `increase` (a refund when negative):
        the balance after, or None when the account does not exist. Raises
        `sa.exc.IntegrityError` when a concurrent charge won (nothing is written)."""
        params = {"user_id": user_id, "operation_id": operation_id, "entry": entry,
                  "increase": increase, "now": self._time(now)}
        if self._sqlite and not conn.info.get(_INSTALLED):
            for statement in _SQLITE_VIEW:
                await conn.exec_driver_sql(statement)
            conn.info[_INSTALLED] = True
        balance = await conn.scalar(_SQLITE if self._sqlite else _PG, params)
        return None if balance is None else int(balance)
