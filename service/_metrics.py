"""Prometheus metrics of one app (its own registry, exposed at /metrics), and the step
wrapper that times and logs every executed step."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from checkpoints import StepContext

log = logging.getLogger("service")


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


def timed_steps(
    metrics: Metrics,
) -> Callable[[StepContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    """A step wrapper for the runner: one log line and one histogram observation per
    executed step."""

    async def wrap(ctx: StepContext, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            output = await call()
            outcome = "completed"
            return output
        finally:
            elapsed = time.perf_counter() - started
            step_name = ctx.step.key.rpartition("/")[2]
            metrics.step_seconds.labels(ctx.operation.kind, step_name, outcome).observe(elapsed)
            log.info(
                "step",
                extra={"operation_id": ctx.operation.id, "user_id": ctx.operation.user_id,
                       "step": ctx.step.key, "duration_ms": round(elapsed * 1000),
                       "outcome": outcome},
            )

    return wrap
