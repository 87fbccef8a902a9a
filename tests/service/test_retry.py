"""The retry policy on its own, on a fake clock (no real sleeping)."""

from __future__ import annotations

import asyncio
import random
import statistics

import pytest

from service._errors import ProviderError
from service.providers import RetryPolicy

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(*errors: ProviderError, then: str = "ok"):
    calls = []

    async def attempt() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return then

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


UNAVAILABLE = ProviderError("PROVIDER_UNAVAILABLE", "down", retryable=True)


async def no_events(*_args) -> None:
    return None


async def test_full_jitter_stays_within_the_exponential_bound():
    """Each delay is in [0, base·2^n] capped at max_delay (backoff's full jitter)."""
    clock = Clock()
    policy = RetryPolicy(max_attempts=6, base_delay_s=1, max_delay_s=5, sleep=clock.sleep,
                         clock=clock, max_total_s=1000)
    attempt = failing(*[UNAVAILABLE] * 5)
    assert await policy.call(attempt, no_events) == "ok"
    for n, delay in enumerate(clock.slept):
        assert 0 <= delay <= min(5, 2 ** n)


def test_full_jitter_spreads_delays_over_the_whole_range():
    """With a seeded random, the delays of one retry cover [0, bound] evenly: some near
    0, some near the bound, their mean near half of it (not a fixed or shrunken wait)."""
    policy = RetryPolicy(base_delay_s=1, max_delay_s=20)
    state = random.getstate()
    random.seed(20261130)
    try:
        delays = [policy.delay(3, UNAVAILABLE) for _ in range(400)]  # bound: 1·2² = 4 s
    finally:
        random.setstate(state)
    assert all(0 <= d <= 4 for d in delays)
    assert min(delays) < 0.2
    assert max(delays) > 3.8
    assert 1.8 < statistics.mean(delays) < 2.2
    assert len({round(d, 3) for d in delays}) > 350


async def test_retry_after_is_honoured_and_a_longer_one_ends_the_retries():
    """Never sooner than Retry-After; one longer than the cap is not waited for: the
    error is raised with its retry_after for the client to honour."""
    clock = Clock()
    policy = RetryPolicy(retry_after_cap_s=10, sleep=clock.sleep, clock=clock,
                         jitter=lambda wait: wait)
    attempt = failing(
        ProviderError("PROVIDER_RATE_LIMITED", "slow", retryable=True, retry_after=4),
        ProviderError("PROVIDER_RATE_LIMITED", "slow", retryable=True, retry_after=600),
    )
    announced = []

    async def on_retry(attempt_no, delay, error):
        announced.append((attempt_no, delay, error.code))

    with pytest.raises(ProviderError) as info:
        await policy.call(attempt, on_retry)
    assert info.value.retry_after == 600
    assert clock.slept == [4]
    assert announced == [(2, 4, "PROVIDER_RATE_LIMITED")]


async def test_attempts_and_total_time_are_bounded():
    """4 tries by default; a retry that would pass the total budget is not made."""
    clock = Clock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, jitter=lambda wait: wait)
    attempt = failing(*[UNAVAILABLE] * 10)
    with pytest.raises(ProviderError):
        await policy.call(attempt, no_events)
    assert len(attempt.calls) == 4
    clock = Clock()
    tight = RetryPolicy(sleep=clock.sleep, clock=clock, jitter=lambda wait: wait,
                        max_total_s=2.5)
    attempt = failing(*[UNAVAILABLE] * 10)
    with pytest.raises(ProviderError):
        await tight.call(attempt, no_events)
    assert clock.slept == [1]  # 1 s; the next retry (2 s later) would end past 2.5 s
    with pytest.raises(ValueError, match="at least 3"):
        RetryPolicy(max_attempts=2)


async def test_only_retryable_errors_are_retried_and_slow_attempts_time_out():
    """A non-retryable error ends at once; an attempt past its timeout is a retryable
    PROVIDER_TIMEOUT."""
    clock = Clock()
    policy = RetryPolicy(sleep=clock.sleep, clock=clock, attempt_timeout_s=0.05)
    blocked = failing(ProviderError("CONTENT_BLOCKED", "no", retryable=False))
    with pytest.raises(ProviderError) as info:
        await policy.call(blocked, no_events)
    assert info.value.code == "CONTENT_BLOCKED"
    assert blocked.calls == [1]

    async def hangs() -> str:
        await asyncio.sleep(10)
        return "never"

    with pytest.raises(ProviderError) as info:
        await policy.call(hangs, no_events)
    assert info.value.code == "PROVIDER_TIMEOUT"
    assert len(clock.slept) == 3
