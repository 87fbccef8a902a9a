"""Cancel, resume and graceful shutdown against real uvicorn processes."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest

from checkpoints import CheckpointStore
from tests.service.conftest import auth, wait_for_step
from tests.service.sse import collect
from tests.service.test_streams import provider_calls, set_account

pytestmark = pytest.mark.anyio


async def test_cancel_delivers_renders_in_flight_and_ends_cancelled(spawn, service_env):
    """Renders already under way are paid work: finished and delivered; the operation
    ends cancelled with an OPERATION_CANCELLED error event; a second cancel changes
    nothing."""
    await set_account(service_env, "user-1", "advanced", 10)
    server = spawn({**service_env, "LOCAL_PROVIDER_DELAY_MS": "800"})
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        created = await client.post("/v1/thumbnails", json={"title": "c", "variations": 2},
                                    headers={**auth(), "Prefer": "respond-async"})
        op_id = created.json()["operation_id"]
        await wait_for_step(client, "", op_id, "v1/render", "running")
        cancelled = await client.post(f"/v1/operations/{op_id}/cancel", headers=auth())
        assert cancelled.status_code == 200
        op = cancelled.json()
        assert op["status"] == "cancelled"
        assert op["error"]["code"] == "OPERATION_CANCELLED"
        assert len(op["result"]["thumbnails"]) == 2
        assert op["result"]["credits_used"] == 2
        async with client.stream("GET", f"/v1/operations/{op_id}/events",
                                 headers=auth()) as response:
            received = await collect(response)
        assert received[-1].event == "error"
        assert received[-1].data["code"] == "OPERATION_CANCELLED"
        assert received[-1].data["retryable"] is False
        again = await client.post(f"/v1/operations/{op_id}/cancel", headers=auth())
        assert again.status_code == 200
        assert again.json()["updated_at"] == op["updated_at"]
        account = (await client.get("/v1/account", headers=auth())).json()
        assert account["credits_remaining"] == 8
        resumed = await client.post(f"/v1/operations/{op_id}/resume", headers=auth())
        assert resumed.status_code == 409
        assert resumed.json()["code"] == "OPERATION_NOT_RESUMABLE"


async def test_cancelling_an_orphaned_run_refunds_what_was_not_delivered(spawn, service_env):
    """The owner dies mid-render; a cancel sent to another instance takes the run over,
    skips the interrupted renders and refunds all their credits."""
    await set_account(service_env, "user-1", "advanced", 10)
    a = spawn({**service_env, "LOCAL_PROVIDER_DELAY_MS": "5000"}, "a")
    b = spawn(service_env, "b")
    async with httpx.AsyncClient(timeout=60) as client:
        created = await client.post(f"{a.url}/v1/thumbnails",
                                    json={"title": "c", "variations": 2},
                                    headers={**auth(), "Prefer": "respond-async"})
        op_id = created.json()["operation_id"]
        await wait_for_step(client, a.url, op_id, "v2/render", "running")
        account = (await client.get(f"{a.url}/v1/account", headers=auth())).json()
        assert account["credits_remaining"] == 8  # reserved
        a.kill()
        cancelled = await client.post(f"{b.url}/v1/operations/{op_id}/cancel",
                                      headers=auth())
        assert cancelled.status_code == 200
        op = cancelled.json()
        assert op["status"] == "cancelled"
        assert op["result"]["thumbnails"] == []
        assert op["result"]["credits_used"] == 0
        statuses = {s["key"]: s["status"] for s in op["steps"]}
        assert statuses["v1/render"] == statuses["v2/render"] == "skipped"
        assert statuses["settle"] == "completed"
        account = (await client.get(f"{b.url}/v1/account", headers=auth())).json()
        assert account["credits_remaining"] == 10
    assert provider_calls(b.log(), op_id) == []


async def test_sigterm_checkpoints_the_current_step_releases_and_exits(spawn, service_env):
    """SIGTERM mid-render: the render finishes and is checkpointed, the lease is released
    and the process exits; another server resumes without rendering again."""
    first = spawn({**service_env, "LOCAL_PROVIDER_DELAY_MS": "1500", "SHUTDOWN_GRACE_S": "20"})
    async with httpx.AsyncClient(timeout=60) as client:
        created = await client.post(f"{first.url}/v1/thumbnails", json={"title": "t"},
                                    headers={**auth(), "Prefer": "respond-async"})
        op_id = created.json()["operation_id"]
        await wait_for_step(client, first.url, op_id, "v1/render", "running")
        code = await asyncio.to_thread(first.terminate, 30)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM), first.log()[-2000:]
        store = CheckpointStore.from_url(service_env["DATABASE_URL"], listen=False)
        try:
            op = await store.get_operation(op_id)
            steps = {s.key: s.status for s in await store.get_steps(op_id)}
        finally:
            await store.close()
        assert op.status == "running"
        assert op.lease_owner is None  # released, not left to expire
        assert steps["v1/render"] == "completed"
        assert steps["v1/variants"] == "pending"

        second = spawn(service_env, "second")
        async with client.stream("GET", f"{second.url}/v1/operations/{op_id}/events",
                                 headers=auth()) as response:
            received = await collect(response)
    assert received[-1].event == "result"
    assert received[-1].data["operation"]["status"] == "succeeded"
    assert provider_calls(second.log(), op_id) == []
    assert provider_calls(first.log(), op_id) == ["v1/render"]
