"""Concurrency slots in Redis, gathered like charges: a hold or release is sent at once
when no other is waiting for Redis (a lone caller never waits); otherwise the ones of one
event-loop tick go together, as one run of a script. A page that opens many streams at
once costs a few round trips, not one per stream — and not one pooled connection each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

from redis.exceptions import ClusterCrossSlotError

log = logging.getLogger("ratelimit")

A = TypeVar("A")
R = TypeVar("R")

#: The most calls one run decides (see `_redis.MAX_BATCH`).
MAX_SLOT_BATCH = 64


class _Batch(Generic[A, R]):
    __slots__ = ("calls", "sent")

    def __init__(self) -> None:
        self.calls: list[tuple[A, asyncio.Future[R]]] = []
        self.sent = False


class Gathered(Generic[A, R]):
    """Calls sent alone (`one`) while none is in flight, else per tick as a run (`many`).
    `many` fails with `ClusterCrossSlotError` on a proxy that refuses keys of several
    callers in one script; then every call goes alone from there on."""

    def __init__(
        self,
        one: Callable[[A], Awaitable[R]],
        many: Callable[[Sequence[A]], Awaitable[Sequence[R]]],
        *,
        enabled: bool,
    ) -> None:
        self._one = one
        self._many = many
        self.enabled = enabled
        self._batch: _Batch[A, R] | None = None
        self._in_flight = 0
        self._runs: set[asyncio.Future[None]] = set()  # referenced while they run

    async def call(self, args: A) -> R:
        if self._batch is None and not (self._in_flight and self.enabled):
            self._in_flight += 1
            try:
                return await self._one(args)
            finally:
                self._in_flight -= 1
        loop = asyncio.get_running_loop()
        batch = self._batch
        if batch is None or len(batch.calls) >= MAX_SLOT_BATCH:
            if batch is not None:
                self._send(batch)
            batch = self._batch = _Batch()
            loop.call_soon(self._end_tick, batch)
        answer: asyncio.Future[R] = loop.create_future()
        batch.calls.append((args, answer))
        return await answer

    def _end_tick(self, batch: _Batch[A, R]) -> None:
        if self._batch is batch:
            self._batch = None
        if not batch.sent:
            self._send(batch)

    def _send(self, batch: _Batch[A, R]) -> None:
        batch.sent = True
        # Callers cancelled before the run was sent are left out of it.
        calls = [(args, answer) for args, answer in batch.calls if not answer.done()]
        if not calls:
            return
        self._in_flight += 1
        run = asyncio.ensure_future(self._deliver(calls))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)

    async def _deliver(self, calls: list[tuple[A, asyncio.Future[R]]]) -> None:
        """One run for `calls`; each caller gets its answer, or the run's error."""
        try:
            results = await self._run([args for args, _ in calls])
        except Exception as exc:
            for _args, answer in calls:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is closing): so are its callers
            for _args, answer in calls:
                answer.cancel()
            raise
        finally:
            self._in_flight -= 1
        for (_args, answer), result in zip(calls, results, strict=True):
            if not answer.done():
                answer.set_result(result)

    async def _run(self, calls: list[A]) -> Sequence[R]:
        if len(calls) == 1:
            return [await self._one(calls[0])]
        try:
            return await self._many(calls)
        except ClusterCrossSlotError as exc:
            if self.enabled:
                log.warning("redis refused slots of several callers in one run (%s): "
                            "sending each alone from now on", exc)
                self.enabled = False
            return [await self._one(args) for args in calls]


def hold_arguments(calls: Sequence[tuple[str, int, str, int]]) -> list[Any]:
    """KEYS then ARGV of `HOLD_SLOTS` for (key, capacity, token, ttl_us) calls."""
    return [*(key for key, *_ in calls),
            *(value for _key, *rest in calls for value in rest)]
