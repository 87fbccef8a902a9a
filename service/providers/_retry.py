"""The one retry policy of provider calls.

Exponential backoff with full jitter (the schedule and jitter of the `backoff` library),
a bounded number of attempts and total time (each attempt's timeout is cut to the time
left), and a provider's `Retry-After` honoured: never retried sooner, and not retried at
all when it asks for longer than the cap or the time left (the error then carries it).
Only retryable `ProviderError`s are retried, at most `retry_limit` times when the error
sets one (an answer without an image is worth one more try, not four); every retry is
announced to the caller (the step emits a `retry` event).
Sleep, clock and jitter are parameters, so tests never sleep for real.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import backoff

from .._errors import ProviderError

T = TypeVar("T")
Sleep = Callable[[float], Coroutine[Any, Any, None]]
OnRetry = Callable[[int, float, ProviderError], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4
    max_total_s: float = 180.0
    attempt_timeout_s: float = 90.0
    base_delay_s: float = 1.0
    max_delay_s: float = 20.0
    #: A requested delay longer than this is not waited for (None: the call's time budget
    #: alone decides, as for any other wait).
    retry_after_cap_s: float | None = None
    sleep: Sleep = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[float], float] = field(default=backoff.full_jitter)

    def __post_init__(self) -> None:
        if self.max_attempts < 3:
            raise ValueError("a provider call is tried at least 3 times")

    def delay(self, retry: int, error: ProviderError) -> float:
        """The wait before retry number `retry` (1-based) after `error`."""
        schedule = backoff.expo(base=2, factor=self.base_delay_s, max_value=self.max_delay_s)
        next(schedule)  # the generator's priming step
        for _ in range(retry - 1):
            next(schedule)
        wait = float(self.jitter(next(schedule)))
        if error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait

    async def call(self, attempt: Callable[[], Awaitable[T]], on_retry: OnRetry) -> T:
        """Run `attempt` until it succeeds, fails for good, or the budget is spent."""
        started = self.clock()
        tries = 0
        retried: dict[str, int] = {}
        while True:
            tries += 1
            left = self.max_total_s - (self.clock() - started)
            try:
                async with asyncio.timeout(max(0.001, min(self.attempt_timeout_s, left))):
                    return await attempt()
            except TimeoutError:
                error = ProviderError(
                    "PROVIDER_TIMEOUT", "the provider did not answer in time", retryable=True
                )
                failure: ProviderError = error
            except ProviderError as exc:
                failure = exc
            if not failure.retryable or tries >= self.max_attempts:
                raise failure
            if (failure.retry_limit is not None
                    and retried.get(failure.code, 0) >= failure.retry_limit):
                raise failure
            retried[failure.code] = retried.get(failure.code, 0) + 1
            if (failure.retry_after is not None and self.retry_after_cap_s is not None
                    and failure.retry_after > self.retry_after_cap_s):
                raise failure  # the provider asks for longer than we wait: say so, with it
            wait = self.delay(tries, failure)
            if self.clock() - started + wait > self.max_total_s:
                raise failure
            await on_retry(tries + 1, wait, failure)
            await self.sleep(wait)
