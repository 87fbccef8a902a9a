"""A bounded local cache of recent denials: (identity, route) → when a retry can succeed.

It answers a caller who keeps knocking without a round trip. It is only ever as strict as
the store: an entry says "a cost of at least `cost` is refused until `retry_at`", measured
from *before* the request was sent, so it expires no later than the store would admit.
Allows are never cached; a refund clears the caller's entries.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ._backend import Verdict


@dataclass(frozen=True, slots=True)
class Denial:
    cost: int
    retry_at: float
    sent_at: float
    verdict: Verdict


class DenialCache:
    """Least-recently-used map with at most `max_entries` entries (0 disables it)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], Denial] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, identity: str, route_id: str, cost: int, now: float) -> Denial | None:
        """The cached denial that also refuses `cost` at `now`, if any."""
        if not self._entries:
            return None
        key = (identity, route_id)
        denial = self._entries.get(key)
        if denial is None:
            return None
        if now >= denial.retry_at:
            del self._entries[key]
            return None
        if cost < denial.cost:
            return None
        self._entries.move_to_end(key)
        return denial

    def remember(
        self, identity: str, route_id: str, cost: int, sent_at: float, verdict: Verdict
    ) -> None:
        if self.max_entries <= 0:
            return
        key = (identity, route_id)
        self._entries[key] = Denial(
            cost, sent_at + verdict.retry_after_us / 1_000_000, sent_at, verdict
        )
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, identity: str) -> None:
        """Drop every entry of `identity` (a refund may have made room on any of its routes
        that share a budget)."""
        for key in [k for k in self._entries if k[0] == identity]:
            del self._entries[key]
