"""A circuit breaker: after a few consecutive failures the backend is not called at all
until a cooldown has passed; then one probe call decides whether it is back."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]


class CircuitBreaker:
    """Closed (calls go through) → open after `failure_threshold` consecutive failures (no
    calls for `cooldown_s`) → half-open (one probe; success closes, failure re-opens)."""

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        cooldown_s: float = 2.0,
        clock: Clock = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or cooldown_s <= 0:
            raise ValueError("failure_threshold must be >= 1 and cooldown_s > 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_started: float | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allows_call(self) -> bool:
        """Whether the next call may go to the backend (it may be the half-open probe)."""
        if self._opened_at is None:
            return True
        now = self._clock()
        if now - self._opened_at < self.cooldown_s:
            return False
        # One probe at a time; a probe that never reported (its task was cancelled) is
        # given up after another cooldown so the breaker cannot stick half-open.
        if self._probe_started is not None and now - self._probe_started < self.cooldown_s:
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probe_started = None

    def record_failure(self) -> None:
        self._failures += 1
        self._probe_started = None
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()

    def retry_after_s(self) -> int:
        """Whole seconds (at least 1) until the next probe may be made."""
        if self._opened_at is None:
            return 1
        left = self.cooldown_s - (self._clock() - self._opened_at)
        return max(1, math.ceil(left))
