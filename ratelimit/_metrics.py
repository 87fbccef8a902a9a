"""Prometheus counters by route: allowed, limited, unavailable, fail-open.

They are registered on the registry the caller passes (the service's /metrics one), or on
a registry of the limiter's own: never implicitly on the process-wide default, so two
limiters can live in one process.

A decision only adds 1 to a plain integer; a collector reads them when the registry is
scraped. prometheus_client's `Counter.inc` takes a lock and checks its state on every
call, which cost about a third of the limiter's own time per decision. The limiter runs
on one event loop, so nothing else writes these integers at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

_FAMILIES = (
    ("allowed", "Requests admitted, by route"),
    ("limited", "Requests refused with 429 (over a limit or no concurrency slot), by route"),
    ("unavailable", "Requests refused with 503: limiter store unreachable on a fail-closed route"),
    ("fail_open", "Decisions made by the local bucket while the store was unreachable, by route"),
)


class RouteCounters:
    """The counts of one route."""

    __slots__ = ("allowed", "fail_open", "limited", "unavailable")

    def __init__(self) -> None:
        self.allowed = 0
        self.limited = 0
        self.unavailable = 0
        self.fail_open = 0


class Metrics(Collector):
    """`ratelimit_<name>_total{route=…}` for each of allowed, limited, unavailable and
    fail_open, on `registry`."""

    def __init__(self, registry: CollectorRegistry, routes: Iterable[str]) -> None:
        self.registry = registry
        self.by_route = {r: RouteCounters() for r in routes}
        registry.register(self)

    def collect(self) -> Iterator[Metric]:
        for name, documentation in _FAMILIES:
            family = CounterMetricFamily(f"ratelimit_{name}", documentation, labels=["route"])
            for route, counters in self.by_route.items():
                family.add_metric([route], getattr(counters, name))
            yield family
