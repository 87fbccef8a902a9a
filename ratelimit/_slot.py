"""A held concurrency slot of a route: in the shared store while it answers, in the
instance's own store on a fail-open route while it does not."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import anyio

from ._backend import US_PER_S
from ._errors import BackendUnavailable, RateLimitUnavailable

if TYPE_CHECKING:
    from ._backend import Backend
    from ._limiter import RateLimiter, _Route

log = logging.getLogger("ratelimit")


class Slot:
    """A held concurrency slot: `renew()` it while the work lasts longer than its TTL,
    `release()` it when the work ends."""

    def __init__(
        self, limiter: RateLimiter, route: _Route, identity: str, token: str, ttl_s: float
    ) -> None:
        self.route_id = route.policy.route_id
        self.identity = identity
        self.token = token
        self.ttl_s = ttl_s
        self.held = False
        self._limiter = limiter
        self._route = route
        self._backend: Backend | None = None

    async def _hold(self) -> bool:
        limiter, policy = self._limiter, self._route.policy
        assert policy.concurrency is not None
        ttl_us = round(self.ttl_s * US_PER_S)
        backend = self._backend
        if backend is None or backend is limiter.backend:
            if limiter.breaker.allows_call():
                try:
                    held = await limiter.backend.hold_slot(
                        self.identity, self.route_id, policy.concurrency, self.token, ttl_us
                    )
                except BackendUnavailable as exc:
                    limiter.breaker.record_failure()
                    log.warning("rate limiter slot on %s: %s", self.route_id, exc)
                else:
                    limiter.breaker.record_success()
                    self._backend = limiter.backend
                    self.held = held
                    return held
            if policy.fail == "closed":
                self._route.counters.unavailable += 1
                retry_after = limiter.breaker.retry_after_s()
                raise RateLimitUnavailable(
                    self.route_id, retry_after, {"Retry-After": str(retry_after)}
                )
            if backend is not None:
                # A Redis slot we cannot reach: keep counting it as held until Redis is back.
                return True
        self._route.counters.fail_open += 1
        capacity = max(1, policy.concurrency // limiter.instances)
        self._backend = limiter._local
        self.held = await limiter._local.hold_slot(
            self.identity, self.route_id, capacity, self.token, ttl_us
        )
        return self.held

    async def renew(self, ttl_s: float | None = None) -> bool:
        """Extend the slot to `ttl_s` (default: its TTL) from now. Returns False when the
        slot had expired and the route is now full; raises `RateLimitUnavailable` when the
        store cannot be reached on a fail-closed route."""
        if self._route.policy.concurrency is None:
            return True
        if ttl_s is not None:
            self.ttl_s = ttl_s
        return await self._hold()

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[Slot]:
        """`async with slot.kept():` — the slot renewed for the block (by the limiter's
        one `SlotKeeper`, with every other kept slot: no task of its own), then
        released."""
        keeper = self._limiter.keeper
        keeper.keep(self)
        try:
            yield self
        finally:
            try:
                await keeper.drop(self)
            finally:
                await self.release()

    async def release(self) -> None:
        """Free the slot (idempotent; shielded from cancellation, never raises)."""
        backend, self._backend, self.held = self._backend, None, False
        if backend is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await backend.release_slot(self.identity, self.route_id, self.token)
            except BackendUnavailable as exc:
                log.warning("slot on %s not released (it expires): %s", self.route_id, exc)
