"""Policies: built-in defaults, the RATE_LIMITS file, and errors that name route and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratelimit import DEFAULT_POLICIES, PolicyError, RoutePolicy, load_policies


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    return path


def test_built_in_defaults() -> None:
    """The contract's defaults: generate/edit 20/60 closed with 2 slots, heatmap 10/60
    closed with 2 slots (decoding images is heavy), video-analysis 10/60 closed,
    operations 120/60 open, 20 open event streams per user, no shared budget."""
    r = DEFAULT_POLICIES.routes
    assert r["generate"] == RoutePolicy("generate", 20, 60, "closed", concurrency=2)
    assert r["edit"] == RoutePolicy("edit", 20, 60, "closed", concurrency=2)
    assert r["heatmap"] == RoutePolicy("heatmap", 10, 60, "closed", concurrency=2)
    assert r["video-analysis"] == RoutePolicy("video-analysis", 10, 60, "closed")
    assert r["operations"] == RoutePolicy("operations", 120, 60, "open")
    assert r["streams"].concurrency == 20
    assert DEFAULT_POLICIES.budgets == ()
    assert load_policies(None) is DEFAULT_POLICIES


def test_file_overrides_and_extends(tmp_path: Path) -> None:
    """A file overrides the fields it names, keeps the rest, and may add routes and budgets."""
    path = write(tmp_path, """
[routes.generate]
limit = 40
window_s = 120
fail = "open"
concurrency = 3

[routes.heatmap]
limit = 5

[routes.thumbnails-export]
limit = 7
window_s = 10
cost = 2

[budgets.ai]
limit = 400
window_s = 3600
routes = ["generate", "edit", "heatmap", "video-analysis"]
""")
    pol = load_policies(path)
    assert pol.routes["generate"] == RoutePolicy("generate", 40, 120, "open", concurrency=3)
    assert pol.routes["heatmap"] == RoutePolicy("heatmap", 5, 60, "closed", concurrency=2)
    assert pol.routes["edit"] == DEFAULT_POLICIES.routes["edit"]
    assert pol.routes["thumbnails-export"] == RoutePolicy("thumbnails-export", 7, 10, cost=2)
    assert [b.name for b in pol.budgets_of("edit")] == ["ai"]
    assert pol.budgets_of("operations") == ()


@pytest.mark.parametrize(
    ("text", "route", "field", "problem"),
    [
        ('[routes.generate]\nlimit = 0', "generate", "limit", "at least 1"),
        ('[routes.generate]\nlimit = "many"', "generate", "limit", "whole number"),
        ('[routes.edit]\nwindow_s = 1.5', "edit", "window_s", "whole number"),
        ('[routes.edit]\nfail = "maybe"', "edit", "fail", '"closed" or "open"'),
        ("[routes.edit]\nconcurrency = -1", "edit", "concurrency", "at least 1"),
        ("[routes.edit]\nburst = 3", "edit", "burst", "unknown field"),
        ("[routes.heatmap]\ncost = 11", "heatmap", "cost", "more than the limit"),
        ("[routes.heatmap]\nlimit = 1_000_000_000", "heatmap", "limit", "at most"),
        ("[routes.new-route]\nlimit = 3", "new-route", "window_s", "required"),
        ("[budgets.ai]\nlimit = 3\nwindow_s = 60", "ai", "routes", "required"),
        ('[budgets.ai]\nlimit = 3\nwindow_s = 60\nroutes = ["nope"]', "ai", "routes", "'nope'"),
    ],
)
def test_bad_file_names_route_and_field(
    tmp_path: Path, text: str, route: str, field: str, problem: str
) -> None:
    """Every bad value fails at load with the file, route and field in the message."""
    path = write(tmp_path, text)
    with pytest.raises(PolicyError) as info:
        load_policies(path)
    message = str(info.value)
    assert str(path) in message
    assert f".{route}] {field}:" in message
    assert problem in message
    assert (info.value.route, info.value.field) == (route, field)


def test_unreadable_or_invalid_file(tmp_path: Path) -> None:
    """A missing file or broken TOML is a PolicyError too, not a crash elsewhere."""
    with pytest.raises(PolicyError, match="cannot be read"):
        load_policies(tmp_path / "missing.toml")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policies(write(tmp_path, "[routes.generate\n"))
    with pytest.raises(PolicyError, match="unknown table"):
        load_policies(write(tmp_path, "[limits]\nx = 1\n"))
    with pytest.raises(PolicyError, match="lowercase"):
        load_policies(write(tmp_path, "[routes.Generate]\nlimit = 1\nwindow_s = 1\n"))
