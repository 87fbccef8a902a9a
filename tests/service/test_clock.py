"""The service's clock is a parameter of `create_app`: token expiry, signed links and
operation timestamps follow it (no test waits for real time to pass)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from service import Settings, create_app
from tests.clock import FakeClock
from tests.service.conftest import in_process

pytestmark = pytest.mark.anyio


@pytest.fixture
def clock() -> FakeClock:
    # Near the real time: the checkpoint store's leases are compared with it too.
    return FakeClock(start=datetime.now(UTC).timestamp())


@pytest.fixture
async def timed(service_env, clock) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    """The app on `clock`, and its services."""
    app = create_app(Settings.from_env(service_env), clock=clock)
    async with in_process(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     timeout=60) as client:
            yield client, app.state.services


async def test_tokens_expire_on_the_services_clock(timed, clock):
    """A one-hour token works until the clock passes its expiry, then answers 401."""
    client, services = timed
    bearer = {"Authorization": f"Bearer {services.auth.issue_user_token('u1', ttl_s=3600)}"}
    assert (await client.get("/v1/account", headers=bearer)).status_code == 200
    clock.advance(3599)
    assert (await client.get("/v1/account", headers=bearer)).status_code == 200
    clock.advance(2)
    expired = await client.get("/v1/account", headers=bearer)
    assert expired.status_code == 401
    assert expired.json()["error"] == "the token has expired"


async def test_signed_links_and_timestamps_follow_the_clock(timed, clock):
    """An operation's timestamps are the clock's; its image links work for 7 days of
    that clock and not after."""
    client, services = timed
    bearer = {"Authorization": f"Bearer {services.auth.issue_user_token('u1', ttl_s=30 * 86400)}"}
    done = await client.post("/v1/thumbnails", json={"title": "clocked"}, headers=bearer)
    operation = done.json()["operation"]
    created = datetime.fromisoformat(operation["created_at"]).timestamp()
    assert abs(created - clock.now) < 1
    link = operation["result"]["thumbnails"][0]["image_url"]
    assert (await client.get(link)).status_code == 200
    clock.advance(7 * 86400 - 60)
    assert (await client.get(link)).status_code == 200
    clock.advance(120)
    assert (await client.get(link)).status_code == 404
