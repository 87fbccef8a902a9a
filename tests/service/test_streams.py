"""Event streams against a real uvicorn process."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image

from checkpoints import CheckpointStore
from tests.service.conftest import auth
from tests.service.sse import collect, events

pytestmark = pytest.mark.anyio


def check_well_formed(events, planned_steps):
    """ids 1..n, `operation` first, a started/completed pair per planned step, one
    terminal `result` last, operation_id everywhere."""
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[0].event == "operation"
    op_id = events[0].data["operation"]["id"]
    assert all(e.data["operation_id"] == op_id for e in events)
    assert [s["key"] for s in events[0].data["operation"]["steps"]] == planned_steps
    for key in planned_steps:
        statuses = [e.data["status"] for e in events
                    if e.event == "step" and e.data["step"] == key]
        assert statuses == ["started", "completed"], key
    assert [e.event for e in events].count("result") == 1
    assert events[-1].event == "result"
    return events[-1].data["operation"]


async def test_a_generation_streams_every_step_and_its_images_load(spawn, service_env):
    """Accept: text/event-stream → the run as a well-formed stream; the images behind the
    result's URLs decode at the right sizes."""
    server = spawn(service_env)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        await client.post("/v1/dev/token")  # absent with a real secret
        async with client.stream(
            "POST", "/v1/thumbnails",
            json={"title": "Streams", "variations": 1},
            headers={**auth(), "Accept": "text/event-stream"},
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["x-accel-buffering"] == "no"
            received = await collect(response)
        op = check_well_formed(
            received, ["reserve", "v1/render", "v1/variants", "v1/record", "settle"]
        )
        assert op["status"] == "succeeded"
        (thumb,) = op["result"]["thumbnails"]
        png = await client.get(thumb["image_url"])
        assert Image.open(io.BytesIO(png.content)).size == (1280, 720)
        small = await client.get(thumb["image_400w_url"])
        assert Image.open(io.BytesIO(small.content)).size == (400, 225)
        # The 400w image is linked as soon as it exists, before the result.
        (variants,) = [e for e in received if e.event == "step" and e.data["step"] ==
                       "v1/variants" and e.data["status"] == "completed"]
        early = await client.get(variants.data["output"]["image_400w_url"])
        assert early.content == small.content
        # Reconnecting after the end: nothing left → 204 (stops EventSource).
        replay = await client.get(
            f"/v1/operations/{op['id']}/events",
            headers={**auth(), "Last-Event-ID": str(received[-1].id)},
        )
        assert replay.status_code == 204


def provider_calls(log: str, op_id: str) -> list[str]:
    """The render steps the local provider was called for, from a server's log."""
    return [
        line.rsplit(" ", 1)[-1]
        for line in log.splitlines()
        if "provider call" in line and op_id in line
    ]


async def set_account(env, user_id: str, tier: str, credits: int) -> None:
    from checkpoints import create_engine
    from service.accounts import Accounts

    engine = create_engine(env["DATABASE_URL"])
    try:
        await Accounts(engine).set(user_id, tier=tier, credits=credits)
    finally:
        await engine.dispose()


async def test_a_run_killed_mid_way_resumes_on_restart_without_repeating_work(
    spawn, service_env
):
    """kill -9 the server after the first render completed; a restarted server, asked for
    the events after the last one seen, takes the run over: no completed render is
    rendered again, credits are charged once, and the client sees every event once."""
    env = {**service_env, "LOCAL_PROVIDER_DELAY_MS": "700"}
    await set_account(env, "user-1", "advanced", 50)
    first = spawn(env, "first")
    seen = []
    async with httpx.AsyncClient(base_url=first.url, timeout=60) as client, client.stream(
        "POST", "/v1/thumbnails",
        json={"title": "Crash test", "variations": 3},
        headers={**auth(), "Accept": "text/event-stream"},
    ) as response:
        async for event in events(response):
            seen.append(event)
            if event.event == "step" and (event.data["step"], event.data["status"]) == (
                "v1/render", "completed"
            ):
                first.kill()
                break
    op_id = seen[0].data["operation"]["id"]
    store = CheckpointStore.from_url(env["DATABASE_URL"], listen=False)
    try:  # what was durably rendered when the process died
        rendered_before = {
            s.key for s in await store.get_steps(op_id)
            if s.key.endswith("/render") and s.status == "completed"
        }
    finally:
        await store.close()
    assert "v1/render" in rendered_before
    calls_before = provider_calls(first.log(), op_id)

    second = spawn(env, "second")
    async with httpx.AsyncClient(base_url=second.url, timeout=60) as client:
        async with client.stream(
            "GET", f"/v1/operations/{op_id}/events",
            headers={**auth(), "Last-Event-ID": str(seen[-1].id)},
        ) as response:
            assert response.status_code == 200
            rest = await collect(response)
        account = (await client.get("/v1/account", headers=auth())).json()
    everything = seen + rest
    assert [e.id for e in everything] == list(range(1, len(everything) + 1))
    assert everything[-1].event == "result"
    op = everything[-1].data["operation"]
    assert op["status"] == "succeeded"
    assert len(op["result"]["thumbnails"]) == 3
    calls_after = provider_calls(second.log(), op_id)
    assert not rendered_before & set(calls_after)  # never rendered twice
    assert len(calls_after) == len(set(calls_after))
    assert set(calls_before) | set(calls_after) == {"v1/render", "v2/render", "v3/render"}
    assert account["credits_remaining"] == 50 - 3
