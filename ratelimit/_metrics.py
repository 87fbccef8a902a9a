"""Prometheus counters by route: allowed, limited, unavailable, fail-open.

They are registered on the registry the caller passes (the service's /metrics one), or on
a registry of the limiter's own: never implicitly on the process-wide default, so two
limiters can live in one process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass(frozen=True, slots=True)
class RouteCounters:
    allowed: Counter
    limited: Counter
    unavailable: Counter
    fail_open: Counter


class Metrics:
    def __init__(self, registry: CollectorRegistry, routes: Iterable[str]) -> None:
        self.registry = registry
        allowed = Counter(
            "ratelimit_allowed", "Requests admitted, by route", ["route"], registry=registry
        )
        limited = Counter(
            "ratelimit_limited",
            "Requests refused with 429 (over a limit or no concurrency slot), by route",
            ["route"],
            registry=registry,
        )
        unavailable = Counter(
            "ratelimit_unavailable",
            "Requests refused with 503: limiter store unreachable on a fail-closed route",
            ["route"],
            registry=registry,
        )
        fail_open = Counter(
            "ratelimit_fail_open",
            "Decisions made by the local bucket while the store was unreachable, by route",
            ["route"],
            registry=registry,
        )
        # Children resolved once: a label lookup per decision is measurable on the hot path.
        self.by_route = {
            r: RouteCounters(
                allowed.labels(r), limited.labels(r), unavailable.labels(r), fail_open.labels(r)
            )
            for r in routes
        }
