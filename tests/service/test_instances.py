"""Two service instances on one PostgreSQL and one Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from tests.service.conftest import SECRET, auth, wait_for_step
from tests.service.sse import collect
from tests.service.test_streams import check_well_formed, set_account

pytestmark = pytest.mark.anyio

PLAN = ["reserve", "v1/render", "v1/variants", "v1/record", "settle"]


@pytest.fixture
def cluster_env(pg_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """Settings shared by the instances (one database, one Redis, one secret)."""
    limits = tmp_path / "limits.toml"
    limits.write_text(
        '[routes.generate]\nlimit = 5\nwindow_s = 3600\nfail = "closed"\nconcurrency = 8\n'
    )
    return {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "DATA_DIR": str(tmp_path / "shared"),  # local storage shared, as a volume would be
        "AUTH_JWT_SECRET": SECRET,
        "ALLOW_LOCAL_PROVIDER": "true",
        "LEASE_TTL_S": "2",
        "RATE_LIMITS": str(limits),
    }


async def test_a_run_started_on_one_instance_is_followed_from_another(spawn, cluster_env):
    """Created on A with Prefer: respond-async, streamed in full from B."""
    a = spawn({**cluster_env, "LOCAL_PROVIDER_DELAY_MS": "300"}, "a")
    b = spawn(cluster_env, "b")
    async with httpx.AsyncClient(timeout=60) as client:
        created = await client.post(f"{a.url}/v1/thumbnails", json={"title": "Across"},
                                    headers={**auth(), "Prefer": "respond-async"})
        assert created.status_code == 202
        events_path = created.json()["links"]["events"]  # relative, carries its own token
        async with client.stream("GET", f"{b.url}{events_path}") as response:
            assert response.status_code == 200
            received = await collect(response)
    check_well_formed(received, PLAN)


async def test_the_rate_limit_holds_across_instances(spawn, cluster_env):
    """A limit of 5 units shared by A and B: exactly 5 of 8 creations are admitted."""
    a = spawn(cluster_env, "a")
    b = spawn(cluster_env, "b")
    await set_account(cluster_env, "user-1", "free", 100)
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(*(
            client.post(f"{(a, b)[i % 2].url}/v1/thumbnails", json={"title": f"n{i}"},
                        headers={**auth(), "Prefer": "respond-async"})
            for i in range(8)
        ))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [202] * 5 + [429] * 3
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"generate";q=5;w=3600'
    admitted = next(r for r in answers if r.status_code == 202)
    assert admitted.headers["RateLimit"].startswith('"generate";r=')


async def live_slots(redis_url: str, user: str) -> int:
    """How many of the user's generate slots are held now (unexpired, by Redis time)."""
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        seconds, micros = await client.time()
        return int(await client.zcount(
            f"rl:{{user:{user}}}:generate:slots", f"({seconds * 1_000_000 + micros}", "+inf"
        ))
    finally:
        await client.aclose()


async def rendering_on(client: httpx.AsyncClient, base: str, title: str) -> str:
    """The id of an operation created on `base` once its render has started there."""
    created = await client.post(f"{base}/v1/thumbnails", json={"title": title},
                                headers={**auth(), "Prefer": "respond-async"})
    op_id = created.json()["operation_id"]
    await wait_for_step(client, base, op_id, "v1/render", "running")
    return str(op_id)


async def test_a_run_orphaned_by_a_killed_instance_is_resumed_through_another(
    spawn, cluster_env
):
    """A dies mid-run; following the operation on B takes the run over once A's lease
    expires, and it completes, holding a concurrency slot again meanwhile (A's expired
    with its lease)."""
    slow = {**cluster_env, "LOCAL_PROVIDER_DELAY_MS": "3000"}
    a = spawn(slow, "a")
    b = spawn(slow, "b")
    async with httpx.AsyncClient(timeout=60) as client:
        op_id = await rendering_on(client, a.url, "Orphan")
        a.kill()
        killed = asyncio.get_running_loop().time()
        seen: list[int] = []

        async def watch() -> None:
            while True:
                await asyncio.sleep(0.1)
                if asyncio.get_running_loop().time() - killed > 2.5:  # A's slot is gone
                    seen.append(await live_slots(cluster_env["REDIS_URL"], "user-1"))

        watcher = asyncio.create_task(watch())
        try:
            async with client.stream("GET", f"{b.url}/v1/operations/{op_id}/events",
                                     headers=auth()) as response:
                received = await collect(response)
        finally:
            watcher.cancel()
    assert 1 in seen, seen  # B's run held one while it rendered
    assert max(seen) == 1
    assert await live_slots(cluster_env["REDIS_URL"], "user-1") == 0  # freed at the end
    assert received[-1].event == "result"
    assert received[-1].data["operation"]["status"] == "succeeded"
    assert [e.id for e in received] == list(range(1, len(received) + 1))
    assert "provider call" in b.log()


async def test_a_run_orphaned_by_a_killed_instance_ends_without_anyone_following(
    spawn, cluster_env
):
    """A dies mid-run and its client never comes back: B takes the run over on its own
    (its reserved credits must not stay charged for a thumbnail nobody delivered)."""
    from checkpoints import CheckpointStore

    a = spawn({**cluster_env, "LOCAL_PROVIDER_DELAY_MS": "3000"}, "a")
    b = spawn(cluster_env, "b")
    async with httpx.AsyncClient(timeout=60) as client:
        op_id = await rendering_on(client, a.url, "Left alone")
    a.kill()
    store = CheckpointStore.from_url(cluster_env["DATABASE_URL"], listen=False)
    try:
        for _ in range(300):
            operation = await store.get_operation(op_id)
            if operation.is_finished:
                break
            await asyncio.sleep(0.1)
    finally:
        await store.close()
    assert operation.status == "succeeded"
    assert "taking over an orphaned run" in b.log()
