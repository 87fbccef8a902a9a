"""Prometheus metrics of one app (its own registry, exposed at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.operations = Counter(
            "viewbait_operations_total", "Operations finished, by kind and outcome",
            ["kind", "outcome"], registry=self.registry,
        )
        self.step_seconds = Histogram(
            "viewbait_step_duration_seconds", "Duration of executed steps, by kind and step",
            ["kind", "step", "outcome"], registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.open_streams = Gauge(
            "viewbait_open_event_streams", "Server-Sent Event streams open on this instance",
            registry=self.registry,
        )
