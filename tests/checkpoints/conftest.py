from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from checkpoints import CheckpointStore


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(db_url: str, clock: FakeClock) -> AsyncIterator[CheckpointStore]:
    """A store on each backend, on the test's clock."""
    store = CheckpointStore.from_url(db_url, clock=clock)
    try:
        yield store
    finally:
        await store.close()
