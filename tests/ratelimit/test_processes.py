"""Several OS processes on one real Redis: exact admission and slots of dead processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import anyio
import pytest

from ratelimit import Policies, RateLimiter, RateLimitExceeded, RoutePolicy
from tests.conftest import ROOT, child_env

pytestmark = pytest.mark.anyio

PROCESSES = 4
CALLERS = 50


def burst(url: str, limit: int, costs: str) -> list[int]:
    """Run PROCESSES children of CALLERS concurrent callers, started together; the costs
    every child admitted."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.ratelimit._burst", url, str(limit), str(CALLERS), costs],
            cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        admitted: list[int] = []
        for child in children:
            out, _ = child.communicate(timeout=60)
            assert child.returncode == 0
            admitted += json.loads(out)
        return admitted
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            for pipe in (child.stdin, child.stdout):
                if pipe is not None:
                    pipe.close()


async def remaining_units(url: str, limit: int) -> int:
    """The units left on the burst's bucket, read from a refused full-size request."""
    policy = RoutePolicy("generate", limit, 86400)
    limiter = RateLimiter.from_url(url, Policies({"generate": policy}))
    try:
        await limiter.check("generate", "user:burst", cost=limit)
    except RateLimitExceeded as exc:
        return int(exc.headers["RateLimit"].split(";r=")[1].split(";")[0])
    finally:
        await limiter.aclose()
    raise AssertionError("the full-size request was admitted: the burst charged nothing")


def test_exactly_the_limit_is_admitted_across_processes(redis_url: str) -> None:
    """4 processes × 50 concurrent callers against a limit of 100: exactly 100 admitted."""
    admitted = burst(redis_url, 100, "1")
    assert len(admitted) == 100


async def test_weighted_costs_add_up_exactly_across_processes(redis_url: str) -> None:
    """Costs 1, 2 and 4 from 200 concurrent callers: admitted plus left is exactly the
    limit, and what is left is less than some refused request needed (nothing refills)."""
    admitted = await anyio.to_thread.run_sync(burst, redis_url, 100, "1,2,4")
    left = await remaining_units(redis_url, 100)
    assert sum(admitted) + left == 100
    assert left < 4
    assert set(admitted) <= {1, 2, 4}


def test_slot_of_a_killed_process_frees_after_its_ttl(redis_url: str) -> None:
    """A child SIGKILLed while holding the only slot blocks others until the slot's TTL."""
    ttl_s = 0.6
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.ratelimit._slot_holder", redis_url, "holder", str(ttl_s)],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        child.kill()
        child.wait(10)
        killed_at = time.monotonic()

        async def take() -> float:
            policy = RoutePolicy("generate", 20, 60, concurrency=1)
            limiter = RateLimiter.from_url(redis_url, Policies({"generate": policy}))
            try:
                with pytest.raises(RateLimitExceeded):
                    await limiter.acquire_slot("generate", "holder")
                while True:
                    try:
                        slot = await limiter.acquire_slot("generate", "holder")
                    except RateLimitExceeded:
                        await anyio.sleep(0.05)
                        continue
                    await slot.release()
                    return time.monotonic() - killed_at
            finally:
                await limiter.aclose()

        freed_after = anyio.run(take)
        assert freed_after < ttl_s + 1.0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()
