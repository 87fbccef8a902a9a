"""The service's own books: accounts with a tier and a balance, the credit ledger, and
thumbnails, in the service's tables (PostgreSQL or SQLite).

Each operation's charge is set to a target: one read of the balance and the operation's
ledger, then, when the charge must move, one statement that writes the difference to the
ledger and moves the balance (`_charge.py`). An increase the balance cannot cover is
refused (402); the balance never goes below zero and no entry is written twice, also
under concurrency, because the database refuses both and the loser reads again.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from checkpoints import autocommit

from .._errors import InsufficientCredits, NotFound
from .._rows import upsert, upsert_statement
from ._charge import ChargeStatement
from ._ledger import Entries
from ._protocol import Charge, NewThumbnail, Thumbnail
from ._tables import accounts, credit_ledger, thumbnails
from ._tiers import TIERS, Account, Prices


class Accounts:
    """Accounts in the service's own tables, created with the free tier's credits on first
    use; prices are the built-in ones."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._single = autocommit(engine)  # reads and one-statement writes: no BEGIN
        self._charge = ChargeStatement(engine.dialect)
        self._prices = Prices()

    @staticmethod
    def _now() -> datetime:
        return datetime.now(UTC)

    async def _ensure(self, conn: AsyncConnection, user_id: str) -> None:
        now = self._now()
        row = {"user_id": user_id, "tier": "free", "credits_remaining": TIERS["free"].credits,
               "created_at": now, "updated_at": now}
        await conn.execute(upsert(conn.dialect, accounts, row, key=["user_id"]))

    async def get(self, user_id: str) -> Account:
        """The account, created with the free tier's credits on first use."""
        params = {"user_id": user_id}
        async with self._single.connect() as conn:
            row = (await conn.execute(_ACCOUNT, params)).first()
        if row is None:
            async with self._engine.begin() as conn:
                await self._ensure(conn, user_id)
                row = (await conn.execute(_ACCOUNT, params)).one()
        return Account(row.user_id, TIERS[row.tier], int(row.credits_remaining))

    async def prices(self) -> Prices:
        return self._prices

    async def set(self, user_id: str, *, tier: str | None, credits: int | None) -> Account:
        """Set an account's tier and/or balance (the `accounts set` command)."""
        if tier is not None and tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}; one of {', '.join(TIERS)}")
        if credits is not None and credits < 0:
            raise ValueError("credits cannot be negative")
        async with self._engine.begin() as conn:
            await self._ensure(conn, user_id)
            values: dict[str, object] = {"updated_at": self._now()}
            if tier is not None:
                values["tier"] = tier
            if credits is not None:
                values["credits_remaining"] = credits
            await conn.execute(
                accounts.update().where(accounts.c.user_id == user_id).values(values)
            )
        return await self.get(user_id)

    async def set_charge(
        self, user_id: str, operation_id: str, target: int, charge: Charge
    ) -> int:
        """Make the operation's net charge `target` credits; returns the balance after.

        Setting a target (rather than adding) makes every retry of the same step a no-op.
        Raises 402 when the balance cannot cover an increase; then nothing is written.
        """
        for attempt in range(1, _CHARGE_ATTEMPTS + 1):
            async with self._single.connect() as conn:
                found = await _balance_and_entries(conn, user_id, operation_id)
                if found is None:  # first use
                    await self._ensure(conn, user_id)
                    await conn.commit()
                    continue
                balance, entries = found
                increase = target - entries.charged
                if increase == 0:
                    return balance
                if increase > balance:
                    raise InsufficientCredits(
                        f"this needs {increase} credits; {balance} remain")
                try:
                    after = await self._charge.apply(
                        conn, user_id=user_id, operation_id=operation_id,
                        entry=entries.key_for(operation_id, increase), increase=increase,
                        now=self._now(),
                    )
                    await conn.commit()
                except sa.exc.IntegrityError:
                    # A concurrent charge won the balance, or the same entry was written
                    # by an earlier owner of the operation: read again and decide again.
                    if attempt == _CHARGE_ATTEMPTS:
                        raise
                    continue
                if after is not None:
                    return after
        raise RuntimeError(f"the charge of operation {operation_id} did not settle")


#: Reads and writes of one charge before giving up on a race that keeps being lost.
_CHARGE_ATTEMPTS = 5


async def _balance_and_entries(
    conn: AsyncConnection, user_id: str, operation_id: str
) -> tuple[int, Entries] | None:
    """The account's balance and the operation's ledger entries in one statement (None
    when the account does not exist yet)."""
    rows = (await conn.execute(_BALANCE, {"user_id": user_id,
                                          "operation_id": operation_id})).all()
    if not rows:
        return None
    ledger = [row for row in rows if row.entry is not None]
    # Ledger deltas are negative for charges.
    entries = Entries([row.entry for row in ledger], -sum(int(row.delta) for row in ledger))
    return int(rows[0].credits_remaining), entries


# The statements of every request and every charge, built once (building one per call
# costs more than running it on SQLite).
_ACCOUNT = sa.select(accounts).where(accounts.c.user_id == sa.bindparam("user_id"))
_BALANCE = (
    sa.select(accounts.c.credits_remaining, credit_ledger.c.entry, credit_ledger.c.delta)
    .select_from(accounts.outerjoin(
        credit_ledger, credit_ledger.c.operation_id == sa.bindparam("operation_id")))
    .where(accounts.c.user_id == sa.bindparam("user_id"))
)


class ServiceThumbnails:
    """Thumbnails in the service's own table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._single = autocommit(engine)  # each of its statements stands alone
        self._insert = upsert_statement(engine.dialect, thumbnails, key=["id"])

    async def load(self, user_id: str, thumbnail_id: str) -> Thumbnail:
        async with self._single.connect() as conn:
            row = (
                await conn.execute(
                    sa.select(thumbnails).where(
                        thumbnails.c.id == thumbnail_id, thumbnails.c.user_id == user_id
                    )
                )
            ).first()
        if row is None:
            raise NotFound("no such thumbnail")
        return Thumbnail(row.id, row.title, row.image_key, row.resolution, row.aspect_ratio)

    async def record(self, thumbnail: NewThumbnail) -> None:
        row = {
            "id": thumbnail.id, "user_id": thumbnail.user_id,
            "operation_id": thumbnail.operation_id, "title": thumbnail.title,
            "image_key": thumbnail.image_key, "image_400w_key": thumbnail.image_400w_key,
            "image_800w_key": thumbnail.image_800w_key, "width": thumbnail.width,
            "height": thumbnail.height, "resolution": thumbnail.resolution,
            "aspect_ratio": thumbnail.aspect_ratio, "provider": thumbnail.provider,
            "created_at": datetime.now(UTC),
        }
        async with self._single.connect() as conn:
            await conn.execute(self._insert, row)
            await conn.commit()
