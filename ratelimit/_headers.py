"""RateLimit header fields (draft-ietf-httpapi-ratelimit-headers) and Retry-After.

    RateLimit-Policy: "generate";q=20;w=60
    RateLimit: "generate";r=12;t=30

One item per limit the request was checked against (the route, then any shared budget).
`r` is the whole units left now. `t` is the whole seconds (rounded up) until the quota is
**fully restored** (r back to q) — for a smoothly refilled bucket that is the draft's "quota
reset"; the time until a given cost fits again is what `Retry-After` says on a refusal.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._backend import US_PER_S, Bucket


def whole_seconds(us: int) -> int:
    """Microseconds as whole seconds, rounded up."""
    return -(-us // US_PER_S)


def retry_after_seconds(us: int) -> int:
    """Retry-After: whole seconds, rounded up, at least 1."""
    return max(1, -(-us // US_PER_S))


def policy_field(buckets: Sequence[Bucket]) -> str:
    return ", ".join(
        f'"{b.name}";q={b.limit};w={b.window_us // US_PER_S}' for b in buckets
    )


def ratelimit_field(
    buckets: Sequence[Bucket], remaining: Sequence[int], reset_us: Sequence[int]
) -> str:
    if len(buckets) == 1:
        return f'"{buckets[0].name}";r={remaining[0]};t={-(-reset_us[0] // US_PER_S)}'
    return ", ".join(
        f'"{b.name}";r={r};t={-(-t // US_PER_S)}'
        for b, r, t in zip(buckets, remaining, reset_us, strict=True)
    )
