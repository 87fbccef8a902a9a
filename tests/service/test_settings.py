"""Settings are checked when they are read: a wrong value fails at start-up, naming it."""

from __future__ import annotations

import pytest

from service import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379", "must be redis://"),
        ("memory://", "leave it unset"),
        ("redis://127.0.0.1:6379/0?socket_timeout=5", "unsupported option"),
        ("redis://127.0.0.1:6379/first", "must be a number"),
    ],
)
def test_bad_redis_url_names_the_setting(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"REDIS_URL.*{message}"):
        Settings.from_env({"REDIS_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@cache.example:6380/2?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=1",
        "redis+cluster://node-1:6379",
    ],
)
def test_redis_urls_of_every_kind_are_accepted(url: str) -> None:
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
