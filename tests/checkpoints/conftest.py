from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from checkpoints import CheckpointStore
from tests.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_800_000_000.0)


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[CheckpointStore]:
    """A store on each backend, on the test's clock."""
    store = CheckpointStore.from_url(db_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()
