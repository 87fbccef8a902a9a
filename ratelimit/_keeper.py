"""Keeping held slots alive: one task renews every kept slot of a limiter.

A slot that lasts longer than its TTL (a long stream, a long run) must be renewed before
it expires. With a task per slot, a thousand open streams are a thousand sleeping tasks
that wake at scattered moments; here one task wakes every third of the shortest TTL kept
and renews every kept slot together: on Redis, renewals of one moment share a round trip
(see `_redis_slots`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._errors import RateLimitError

if TYPE_CHECKING:
    from ._slot import Slot

Sleep = Callable[[float], Coroutine[Any, Any, None]]


class SlotKeeper:
    """Renews kept slots at least every third of their TTL, from one task that runs while
    any slot is kept. `sleep` waits between rounds (tests pass their own)."""

    def __init__(self, *, sleep: Sleep = asyncio.sleep) -> None:
        self._sleep = sleep
        self._kept: dict[Slot, None] = {}  # a set in the order slots came
        self._task: asyncio.Task[None] | None = None
        self._period = 0.0

    def __len__(self) -> int:
        return len(self._kept)

    def keep(self, slot: Slot) -> None:
        """Renew `slot` until `drop(slot)`."""
        self._kept[slot] = None
        period = slot.ttl_s / 3
        if self._task is None or period < self._period:
            if self._task is not None:
                self._task.cancel()
            self._period = period
            self._task = asyncio.get_running_loop().create_task(
                self._renew_kept(), name="ratelimit:slot-keeper")

    def drop(self, slot: Slot) -> None:
        self._kept.pop(slot, None)
        if not self._kept and self._task is not None:
            self._task.cancel()  # nothing left to renew: no task lingers
            self._task = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_kept(self) -> None:
        me = asyncio.current_task()
        try:
            while self._kept:
                await self._sleep(self._period)
                await asyncio.gather(*(self._renew(slot) for slot in list(self._kept)))
        finally:
            if self._task is me:
                self._task = None

    async def _renew(self, slot: Slot) -> None:
        if slot not in self._kept:
            return  # released meanwhile: renewing would hold it again
        with contextlib.suppress(RateLimitError):
            await slot.renew()
