"""Token-bucket arithmetic in integers, the same as the Redis script's.

A bucket of `limit` units refilled over `window_us` is kept scaled by `window_us`: one unit
is `window_us` scaled tokens, the bucket holds `limit * window_us` of them and refills by
exactly `limit` per microsecond. No division happens until the answer, so nothing drifts.
A missing bucket is a full one.
"""

from __future__ import annotations

from ._backend import Bucket


def level_at(bucket: Bucket, stored: tuple[int, int] | None, now_us: int) -> int:
    """Scaled tokens in `bucket` at `now_us` from its stored `(tokens, at_us)`."""
    capacity = bucket.limit * bucket.window_us
    if stored is None:
        return capacity
    tokens, at_us = stored
    elapsed = min(max(now_us - at_us, 0), bucket.window_us)
    return min(capacity, tokens + elapsed * bucket.limit)


def wait_us(bucket: Bucket, level: int, cost: int) -> int:
    """Microseconds until `level` holds `cost` units (0 if it does now)."""
    missing = cost * bucket.window_us - level
    return 0 if missing <= 0 else -(-missing // bucket.limit)


def reset_us(bucket: Bucket, level: int) -> int:
    """Microseconds until the bucket is full again."""
    return -(-(bucket.limit * bucket.window_us - level) // bucket.limit)


def remaining(bucket: Bucket, level: int) -> int:
    return level // bucket.window_us
