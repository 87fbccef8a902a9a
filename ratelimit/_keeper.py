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
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ._errors import RateLimitError

if TYPE_CHECKING:
    from ._slot import Slot

Sleep = Callable[[float], Coroutine[Any, Any, None]]

log = logging.getLogger("ratelimit")


class SlotKeeper:
    """Renews kept slots at least every third of their TTL, from one task that runs while
    any slot is kept. `sleep` waits between rounds (tests pass their own)."""

    def __init__(self, *, sleep: Sleep = asyncio.sleep) -> None:
        self._sleep = sleep
        self._kept: dict[Slot, None] = {}  # a set in the order slots came
        self._renewing: dict[Slot, asyncio.Future[None]] = {}  # renewals under way
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

    async def drop(self, slot: Slot) -> None:
        """Renew `slot` no more; returns once a renewal of it already under way has
        landed, so that a release that follows cannot be undone by that renewal."""
        self._kept.pop(slot, None)
        renewing = self._renewing.get(slot)
        if renewing is not None:
            await asyncio.shield(renewing)
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
        landed = asyncio.get_running_loop().create_future()
        self._renewing[slot] = landed
        try:
            await slot.renew()
        except RateLimitError:
            pass  # unreachable, or full again: the next round tries again
        except Exception:  # one slot's fault must not stop the others' renewals
            log.exception("renewing a slot on %s failed", slot.route_id)
        finally:
            del self._renewing[slot]
            landed.set_result(None)
