"""The seam between the limiter and its stores: a small `Protocol` and the values it trades.

A backend keeps, per caller, one token bucket per limit (`Bucket`) and one set of
concurrency slots per route. Every key of a caller shares one Redis Cluster hash tag,
`rl:{<identity>}:…`, so a decision that touches several of them is one atomic script on one
shard. Backends raise `BackendUnavailable` when they cannot answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

US_PER_S = 1_000_000


@dataclass(frozen=True, slots=True)
class Bucket:
    """One limit as a backend sees it: `limit` units refilled over `window_us` microseconds.

    `name` is the key suffix and the policy name in headers: a route id or a budget name.
    """

    name: str
    limit: int
    window_us: int


class Verdict(NamedTuple):
    """A backend's answer to a charge, for every bucket in the order they were given.

    `remaining` is the whole units left after the decision; `reset_us` the time until the
    bucket is full again; `retry_after_us` (0 when allowed) the time until the same cost
    would be admitted. (A named tuple: made on every decision, it is made fast.)
    """

    allowed: bool
    retry_after_us: int
    remaining: tuple[int, ...]
    reset_us: tuple[int, ...]


def bucket_key(identity: str, name: str) -> str:
    # The suffix names the value's format; a new format gets a new suffix. Then an instance
    # still running the previous version never reads a value it cannot parse (which would
    # be a script error, a 503 on a fail-closed route) while old and new run side by side;
    # the price is paid once, at the upgrade: each counts separately for one window, and a
    # caller starts with a full bucket. Earlier formats: `rl:{<identity>}:<name>` (a hash),
    # `…:<name>:bucket` (the numbers as text). Their keys expire within one window.
    return f"rl:{{{identity}}}:{name}:tokens"


def slots_key(identity: str, route_id: str) -> str:
    return f"rl:{{{identity}}}:{route_id}:slots"


class Backend(Protocol):
    """What the limiter needs from a store (`redis` or `memory`)."""

    name: str

    async def charge(self, identity: str, buckets: Sequence[Bucket], cost: int) -> Verdict:
        """Take `cost` units from every bucket, or from none when any lacks them."""
        ...

    async def refund(self, identity: str, buckets: Sequence[Bucket], cost: int) -> None:
        """Give `cost` units back to every bucket (never above its limit)."""
        ...

    async def hold_slot(
        self, identity: str, route_id: str, capacity: int, token: str, ttl_us: int
    ) -> bool:
        """Hold (or renew) slot `token` until `ttl_us` from now if fewer than `capacity`
        other live slots are held; False when full."""
        ...

    async def release_slot(self, identity: str, route_id: str, token: str) -> None:
        """Free slot `token` (no error when it has already expired)."""
        ...

    async def ping(self) -> bool:
        """Whether the store answers (readiness checks); never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections the backend owns."""
        ...
