"""The service's own books (`Accounts`): charges set to a target, under races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from checkpoints import create_engine
from service import migrate
from service._errors import InsufficientCredits
from service.accounts import Accounts, Charge
from service.accounts._tables import credit_ledger

pytestmark = pytest.mark.anyio

CHARGE = Charge("generation", "Thumbnail generation: 1 thumbnail")


@pytest.fixture
async def books(db_url: str) -> AsyncIterator[tuple[Accounts, sa.ext.asyncio.AsyncEngine]]:
    await migrate(db_url)
    engine = create_engine(db_url)
    try:
        yield Accounts(engine), engine
    finally:
        await engine.dispose()


async def ledger(engine: sa.ext.asyncio.AsyncEngine, user_id: str) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            sa.select(credit_ledger.c.entry, credit_ledger.c.delta)
            .where(credit_ledger.c.user_id == user_id).order_by(credit_ledger.c.id)
        )).all()
    return [(row.entry, row.delta) for row in rows]


async def test_concurrent_charges_never_take_the_balance_below_zero(books):
    """Seven operations of one user reserve at once against a balance of three: three are
    charged, four are refused with 402, and nothing of the refused ones is written."""
    accounts, engine = books
    await accounts.set("u-race", tier="pro", credits=3)
    outcomes = await asyncio.gather(
        *(accounts.set_charge("u-race", f"op-{i}", 1, CHARGE) for i in range(7)),
        return_exceptions=True,
    )
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(refused) == 4
    assert sorted(o for o in outcomes if isinstance(o, int)) == [0, 1, 2]
    assert (await accounts.get("u-race")).credits_remaining == 0
    entries = await ledger(engine, "u-race")
    assert len(entries) == 3
    assert all(delta == -1 and entry.endswith(":reserve") for entry, delta in entries)


async def test_two_owners_setting_one_charge_at_once_move_it_once(books):
    """An earlier owner and its successor settle the same operation at the same moment:
    the entry is written once and the balance moves once; the loser reads again and
    finds the charge at its target."""
    accounts, engine = books
    await accounts.set("u-twice", tier="pro", credits=10)
    first, second = await asyncio.gather(
        accounts.set_charge("u-twice", "op-1", 4, CHARGE),
        accounts.set_charge("u-twice", "op-1", 4, CHARGE),
    )
    assert (first, second) == (6, 6)
    assert await ledger(engine, "u-twice") == [("op:op-1:reserve", -4)]
    # Settling lower refunds the difference under a key of its own, once.
    assert await accounts.set_charge("u-twice", "op-1", 1, CHARGE) == 9
    assert await accounts.set_charge("u-twice", "op-1", 1, CHARGE) == 9
    assert await ledger(engine, "u-twice") == [("op:op-1:reserve", -4),
                                               ("op:op-1:refund", 3)]


async def test_a_first_charge_creates_the_account_with_the_free_credits(books):
    accounts, engine = books
    assert await accounts.set_charge("u-new", "op-1", 1, CHARGE) == 9
    assert (await accounts.get("u-new")).tier.name == "free"
    assert await ledger(engine, "u-new") == [("op:op-1:reserve", -1)]
