"""The charge scripts against the integer arithmetic of `_bucket` (the memory backend's):
the unrolled one-request script and the script that decides a run of requests must answer
and store exactly what the arithmetic says, at the server time they stored."""

from __future__ import annotations

import random
import struct

import pytest
import redis.asyncio

from ratelimit import Bucket
from ratelimit import _bucket as arithmetic
from ratelimit._scripts import charge_one_script, charge_script

pytestmark = pytest.mark.anyio

# Limits whose windows do not divide evenly by the limit, a fast bucket, and a budget.
SHAPES = [
    (Bucket("generate", 7, 60_000_000),),
    (Bucket("fast", 1_000, 1_000_000),),
    (Bucket("generate", 20, 60_000_000), Bucket("ai", 33, 3_600_000_000)),
]

State = tuple[int, int] | None


def expected(
    buckets: tuple[Bucket, ...], states: list[State], now: int, cost: int
) -> tuple[list[int], list[State]]:
    """The script's integers for one request, and the states after it."""
    levels = [arithmetic.level_at(b, s, now) for b, s in zip(buckets, states, strict=True)]
    retry = max(arithmetic.wait_us(b, lv, cost) for b, lv in zip(buckets, levels, strict=True))
    if retry == 0:
        levels = [lv - cost * b.window_us for b, lv in zip(buckets, levels, strict=True)]
        states = [(lv, now) for lv in levels]
    out = [retry]
    for b, lv in zip(buckets, levels, strict=True):
        out += [arithmetic.remaining(b, lv), arithmetic.reset_us(b, lv)]
    return out, states


async def stored(client: redis.asyncio.Redis, keys: list[str]) -> list[State]:
    states: list[State] = []
    for key in keys:
        value = await client.get(key)
        if value is None:
            states.append(None)
        else:
            level, at = struct.unpack("dd", value)
            assert level == int(level)
            assert at == int(at)
            states.append((int(level), int(at)))
    return states


@pytest.mark.parametrize("shape", range(len(SHAPES)))
async def test_both_scripts_follow_the_integer_arithmetic(redis_url: str, shape: int) -> None:
    buckets = SHAPES[shape]
    n = len(buckets)
    one, run = charge_one_script(buckets), charge_script(buckets)
    client = redis.asyncio.Redis.from_url(redis_url)
    rng = random.Random(shape)
    try:
        for script in (one, run):
            keys = [f"rl:{{user:oracle-{shape}}}:{b.name}:tokens" for b in buckets]
            await client.delete(*keys)
            for _ in range(60):
                # One request at a time with the one-request script; runs of 1-5 with the
                # other, so that later requests of a run see what earlier ones took.
                size = 1 if script is one else rng.randint(1, 5)
                costs = [rng.choice([1, 1, 2, 3]) for _ in range(size)]
                before = await stored(client, keys)
                args: list[str | int] = keys * size
                if any(c != 1 for c in costs):
                    args += costs
                out = await client.eval(script, n * size, *args)
                after = await stored(client, keys)
                # The server time of the run: what it stored, if anything was admitted.
                times = {s[1] for s in after if s is not None} - {
                    s[1] for s in before if s is not None
                }
                assert len(times) <= 1
                width = 1 + 2 * n
                if not times:  # nothing admitted: nothing written, every answer a refusal
                    assert after == before
                    assert all(out[i * width] > 0 for i in range(size))
                    continue
                now = times.pop()
                states = before
                for i, cost in enumerate(costs):
                    want, states = expected(buckets, states, now, cost)
                    assert out[i * width : (i + 1) * width] == want, (i, costs)
                assert after == states
    finally:
        await client.aclose()
