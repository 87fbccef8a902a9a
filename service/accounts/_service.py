"""Accounts, tiers and the credit ledger.

Invariant: the net credits charged for an operation equal the cost of what it delivered.
Each operation's charge is *set* to a target (the cost of what is under way or delivered)
in one transaction that locks the account row, writes the difference to the ledger and
moves the balance, so no retry path can charge twice, and an increase the balance cannot
cover is refused (402) — the balance never goes below zero, also under concurrency.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .._errors import InsufficientCredits, TierLimit
from .._spec import ASPECT_RATIOS, RESOLUTIONS
from ._rows import upsert
from ._tables import accounts, credit_ledger


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    credits: int
    resolutions: tuple[str, ...]
    aspect_ratios: tuple[str, ...]
    max_variations: int
    heatmaps: bool
    video_analysis: bool


TIERS: Final[Mapping[str, Tier]] = {
    "free": Tier("free", 10, ("1K",), ("16:9",), 1, False, False),
    "starter": Tier(
        "starter", 100, ("1K", "2K"), ("1:1", "3:2", "3:4", "9:16", "16:9"), 2, False, False
    ),
    "advanced": Tier("advanced", 300, RESOLUTIONS, ASPECT_RATIOS, 3, True, False),
    "pro": Tier("pro", 700, RESOLUTIONS, ASPECT_RATIOS, 4, True, True),
}
RESOLUTION_CREDITS: Final[Mapping[str, int]] = {"1K": 1, "2K": 2, "4K": 4}
EDIT_CREDITS: Final = 2


@dataclass(frozen=True, slots=True)
class Account:
    user_id: str
    tier: Tier
    credits_remaining: int


def check_generation_allowed(
    tier: Tier, *, resolution: str, aspect_ratio: str, variations: int
) -> None:
    """Tier gates of a generation (403 TIER_LIMIT naming what the tier allows)."""
    if resolution not in tier.resolutions:
        raise TierLimit(
            f"the {tier.name} tier allows resolutions {', '.join(tier.resolutions)}"
        )
    if aspect_ratio not in tier.aspect_ratios:
        raise TierLimit(
            f"the {tier.name} tier allows aspect ratios {', '.join(tier.aspect_ratios)}"
        )
    if variations > tier.max_variations:
        raise TierLimit(f"the {tier.name} tier allows up to {tier.max_variations} variations")


class Accounts:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

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
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(sa.select(accounts).where(accounts.c.user_id == user_id))
            ).first()
            if row is None:
                await self._ensure(conn, user_id)
                await conn.commit()
                row = (
                    await conn.execute(sa.select(accounts).where(accounts.c.user_id == user_id))
                ).one()
        return Account(row.user_id, TIERS[row.tier], int(row.credits_remaining))

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

    async def set_charge(self, user_id: str, operation_id: str, target: int) -> int:
        """Make the operation's net charge `target` credits; returns the balance after.

        Setting a target (rather than adding) makes every retry of the same step a no-op.
        Raises 402 when the balance cannot cover an increase; then nothing is written.
        """
        async with self._engine.begin() as conn:
            await self._ensure(conn, user_id)
            # Serialises charges of one user (SQLite's BEGIN IMMEDIATE already does).
            balance = int(
                await conn.scalar(
                    sa.select(accounts.c.credits_remaining)
                    .where(accounts.c.user_id == user_id)
                    .with_for_update()
                )
                or 0
            )
            entries, total = (
                await conn.execute(
                    sa.select(
                        sa.func.count(), sa.func.coalesce(sa.func.sum(credit_ledger.c.delta), 0)
                    ).where(credit_ledger.c.operation_id == operation_id)
                )
            ).one()
            increase = target + int(total)  # ledger deltas are negative for charges
            if increase == 0:
                return balance
            if increase > balance:
                raise InsufficientCredits(f"this needs {increase} credits; {balance} remain")
            now = self._now()
            await conn.execute(
                credit_ledger.insert().values(
                    user_id=user_id, operation_id=operation_id, entry=f"#{int(entries) + 1}",
                    delta=-increase, created_at=now,
                )
            )
            await conn.execute(
                accounts.update()
                .where(accounts.c.user_id == user_id)
                .values(credits_remaining=accounts.c.credits_remaining - increase,
                        updated_at=now)
            )
            return balance - increase
