"""Route policies and shared budgets, from built-in defaults and a `RATE_LIMITS` TOML file.

The file (every table optional; a route it does not name keeps its default, a field it does
not give keeps the route's default):

    [routes.generate]            # generate, edit, heatmap, video-analysis, operations, or new
    limit = 20                   # cost units the bucket holds (whole units)
    window_s = 60                # seconds to refill it from empty (rate = limit / window_s)
    fail = "closed"              # while the shared store is unreachable: "closed" or "open"
    concurrency = 2              # optional: operations of this route in flight per caller
    cost = 1                     # optional: units a request costs when the caller names none

    [budgets.ai]                 # optional, off by default: a second limit shared by routes
    limit = 400                  # e.g. AI units per user per hour over all AI routes,
    window_s = 3600              # charged all-or-none with the route's own limit
    routes = ["generate", "edit", "heatmap", "video-analysis"]

A wrong value raises `PolicyError` naming the table, the route and the field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ._errors import PolicyError

FailMode = Literal["closed", "open"]

# The scripts keep `limit * window` in microseconds in Lua numbers (doubles): exact below
# 2^53 µs, so limit × window_s must stay below about 9 × 10^9.
MAX_UNIT_SECONDS = 9_000_000_000

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """The limit of one route: `limit` units, refilled smoothly over `window_s` seconds."""

    route_id: str
    limit: int
    window_s: int
    fail: FailMode = "closed"
    concurrency: int | None = None
    cost: int = 1


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit shared by several routes (e.g. AI units per user per hour)."""

    name: str
    limit: int
    window_s: int
    routes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Policies:
    """Every route's policy and the shared budgets."""

    routes: Mapping[str, RoutePolicy]
    budgets: tuple[Budget, ...] = ()
    source: str = field(default="built-in defaults", compare=False)

    def budgets_of(self, route_id: str) -> tuple[Budget, ...]:
        return tuple(b for b in self.budgets if route_id in b.routes)


DEFAULT_POLICIES = Policies(
    MappingProxyType(
        {
            "generate": RoutePolicy("generate", 20, 60, "closed", concurrency=2),
            "edit": RoutePolicy("edit", 20, 60, "closed", concurrency=2),
            "heatmap": RoutePolicy("heatmap", 10, 60, "closed", concurrency=2),
            "video-analysis": RoutePolicy("video-analysis", 10, 60, "closed"),
            "operations": RoutePolicy("operations", 120, 60, "open"),
            # Open event streams per user (only its concurrency is used).
            "streams": RoutePolicy("streams", 120, 60, "open", concurrency=20),
        }
    )
)

_ROUTE_FIELDS = frozenset({"limit", "window_s", "fail", "concurrency", "cost"})
_BUDGET_FIELDS = frozenset({"limit", "window_s", "routes"})


def load_policies(path: str | Path | None, base: Policies = DEFAULT_POLICIES) -> Policies:
    """Policies from a `RATE_LIMITS` file over `base`; `None` gives `base` unchanged."""
    if path is None:
        return base
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise PolicyError(source, "file", "-", "-", f"cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, "file", "-", "-", f"is not valid TOML: {exc}") from exc
    return parse_policies(data, base, source=source)


def parse_policies(
    data: Mapping[str, Any], base: Policies = DEFAULT_POLICIES, *, source: str = "RATE_LIMITS"
) -> Policies:
    """Policies from an already parsed mapping shaped like the `RATE_LIMITS` file."""
    for key in data:
        if key not in ("routes", "budgets"):
            raise PolicyError(source, key, "-", "-", "unknown table (expected routes, budgets)")
    routes = dict(base.routes)
    for route_id, table in _tables(data, "routes", source):
        routes[route_id] = _route(source, route_id, table, routes.get(route_id))
    budgets = {b.name: b for b in base.budgets}
    for name, table in _tables(data, "budgets", source):
        budgets[name] = _budget(source, name, table, routes)
    clash = set(budgets) & set(routes)
    if clash:
        name = sorted(clash)[0]
        raise PolicyError(source, "budgets", name, "-", "a budget cannot share a route's name")
    return Policies(MappingProxyType(routes), tuple(budgets.values()), source)


def _tables(data: Mapping[str, Any], section: str, source: str) -> list[tuple[str, Any]]:
    tables = data.get(section, {})
    if not isinstance(tables, dict):
        raise PolicyError(source, section, "-", "-", "must be a table of tables")
    for name, table in tables.items():
        if not _NAME.fullmatch(name):
            raise PolicyError(
                source, section, name, "-", "name must be lowercase letters, digits, - or _"
            )
        if not isinstance(table, dict):
            raise PolicyError(source, section, name, "-", "must be a table")
    return list(tables.items())


def _positive_int(source: str, section: str, name: str, fld: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(
            source, section, name, fld, f"must be a whole number of at least 1, got {value!r}"
        )
    return value


def _route(
    source: str, route_id: str, table: dict[str, Any], default: RoutePolicy | None
) -> RoutePolicy:
    for fld in table:
        if fld not in _ROUTE_FIELDS:
            raise PolicyError(
                source, "routes", route_id, fld,
                f"unknown field (expected {', '.join(sorted(_ROUTE_FIELDS))})",
            )
    for fld in ("limit", "window_s"):
        if default is None and fld not in table:
            raise PolicyError(source, "routes", route_id, fld, "is required for a new route")

    def get(fld: str, fallback: Any) -> Any:
        return table.get(fld, getattr(default, fld) if default is not None else fallback)

    limit = _positive_int(source, "routes", route_id, "limit", get("limit", None))
    window_s = _positive_int(source, "routes", route_id, "window_s", get("window_s", None))
    _within_precision(source, "routes", route_id, limit, window_s)
    fail = get("fail", "closed")
    if fail not in ("closed", "open"):
        raise PolicyError(
            source, "routes", route_id, "fail", f'must be "closed" or "open", got {fail!r}'
        )
    concurrency = get("concurrency", None)
    if concurrency is not None:
        concurrency = _positive_int(source, "routes", route_id, "concurrency", concurrency)
    cost = _positive_int(source, "routes", route_id, "cost", get("cost", 1))
    if cost > limit:
        raise PolicyError(
            source, "routes", route_id, "cost", f"{cost} is more than the limit of {limit}"
        )
    return RoutePolicy(route_id, limit, window_s, fail, concurrency, cost)


def _budget(
    source: str, name: str, table: dict[str, Any], routes: Mapping[str, RoutePolicy]
) -> Budget:
    for fld in table:
        if fld not in _BUDGET_FIELDS:
            raise PolicyError(
                source, "budgets", name, fld,
                f"unknown field (expected {', '.join(sorted(_BUDGET_FIELDS))})",
            )
    for fld in _BUDGET_FIELDS:
        if fld not in table:
            raise PolicyError(source, "budgets", name, fld, "is required")
    limit = _positive_int(source, "budgets", name, "limit", table["limit"])
    window_s = _positive_int(source, "budgets", name, "window_s", table["window_s"])
    _within_precision(source, "budgets", name, limit, window_s)
    members = table["routes"]
    if not isinstance(members, list) or not members or not all(
        isinstance(r, str) for r in members
    ):
        raise PolicyError(source, "budgets", name, "routes", "must be a list of route ids")
    for route_id in members:
        if route_id not in routes:
            raise PolicyError(source, "budgets", name, "routes", f"unknown route {route_id!r}")
    return Budget(name, limit, window_s, frozenset(members))


def _within_precision(source: str, section: str, name: str, limit: int, window_s: int) -> None:
    if limit * window_s > MAX_UNIT_SECONDS:
        raise PolicyError(
            source, section, name, "limit",
            f"limit × window_s must be at most {MAX_UNIT_SECONDS:,} (got {limit * window_s:,})",
        )
