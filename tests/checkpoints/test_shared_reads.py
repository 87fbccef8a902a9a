"""Overlapping reads of one operation share a query, and never one that started before
the caller asked."""

from __future__ import annotations

import asyncio

import pytest

from checkpoints import OperationNotFound
from checkpoints._shared_reads import SharedReads

pytestmark = pytest.mark.anyio


class Row:
    """A fake row read: counts queries, returns the version at the query's start, can
    hold queries back."""

    def __init__(self) -> None:
        self.version = 0
        self.queries = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.started = asyncio.Event()

    async def read(self, key: str) -> int:
        self.queries += 1
        self.started.set()
        seen = self.version
        await self.gate.wait()
        if key == "missing":
            raise OperationNotFound(key)
        return seen


async def test_callers_arriving_during_a_query_share_the_next_one():
    """One query runs; 50 callers that arrive meanwhile get one more query between them,
    which sees the write made before they asked."""
    row = Row()
    reads = SharedReads(row.read)
    row.gate.clear()
    first = asyncio.create_task(reads.get("op"))
    await row.started.wait()
    row.version = 1  # written after the first query started
    later = [asyncio.create_task(reads.get("op")) for _ in range(50)]
    await asyncio.sleep(0)
    row.gate.set()
    assert await first == 0
    assert set(await asyncio.gather(*later)) == {1}
    assert row.queries == 2
    assert await reads.get("op") == 1  # nothing in flight: a query of its own
    assert row.queries == 3


async def test_an_error_reaches_every_caller_and_a_cancelled_caller_stops_no_one():
    """A query's error goes to all who share it; a caller cancelled while waiting leaves
    the query to the others."""
    row = Row()
    reads = SharedReads(row.read)
    row.gate.clear()
    first = asyncio.create_task(reads.get("missing"))
    await row.started.wait()
    later = [asyncio.create_task(reads.get("missing")) for _ in range(3)]
    await asyncio.sleep(0)
    later[0].cancel()
    row.gate.set()
    results = await asyncio.gather(first, *later, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert all(isinstance(r, OperationNotFound) for r in (results[0], *results[2:]))
    assert row.queries == 2


async def test_a_store_read_with_another_user_is_not_found(store):
    """get_operation(user_id=…) still answers only the owner, also while the row is
    shared by concurrent callers."""
    op, _ = await store.create_operation(user_id="owner", kind="k", input={})
    mine, theirs = await asyncio.gather(
        store.get_operation(op.id, user_id="owner"),
        store.get_operation(op.id, user_id="intruder"),
        return_exceptions=True,
    )
    assert mine.id == op.id
    assert isinstance(theirs, OperationNotFound)
