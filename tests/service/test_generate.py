"""thumbnail.generate through the API, in process (JSON answers)."""

from __future__ import annotations

import asyncio
import io

import httpx
import pytest
from PIL import Image

from tests.service.conftest import auth

pytestmark = pytest.mark.anyio


async def test_a_json_generation_returns_the_finished_operation_with_images(
    client: httpx.AsyncClient,
):
    """Without Accept/Prefer the answer is the finished snapshot; the signed URLs serve
    a PNG at the requested size and JPEG variants 400 and 800 wide."""
    response = await client.post(
        "/v1/thumbnails", json={"title": "I tried every AI thumbnail tool"}, headers=auth()
    )
    assert response.status_code == 200, response.text
    op = response.json()["operation"]
    assert op["kind"] == "thumbnail.generate"
    assert op["status"] == "succeeded"
    assert [s["key"] for s in op["steps"]] == [
        "reserve", "v1/render", "v1/variants", "v1/record", "settle"
    ]
    assert all(s["status"] == "completed" for s in op["steps"])
    result = op["result"]
    assert result["credits_used"] == 1
    assert result["credits_remaining"] == 9
    (thumb,) = result["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (1280, 720)
    for field, fmt, width in (("image_url", "PNG", 1280), ("image_400w_url", "JPEG", 400),
                              ("image_800w_url", "JPEG", 800)):
        image = await client.get(thumb[field])
        assert image.status_code == 200
        decoded = Image.open(io.BytesIO(image.content))
        assert decoded.format == fmt
        assert decoded.size[0] == width
    assert response.headers["RateLimit-Policy"] == '"generate";q=20;w=60'
    account = await client.get("/v1/account", headers=auth())
    assert account.json() == {"user_id": "user-1", "tier": "free", "credits_remaining": 9}
    # The answer comes from the run that finished it, not from a read: it is the
    # operation as stored, to the microsecond (URLs aside: each snapshot signs its own).
    stored = await client.get(f"/v1/operations/{op['id']}", headers=auth())
    assert _unsigned(stored.json()) == _unsigned(op)


def _unsigned(snapshot: dict) -> dict:
    """A snapshot without its signed URLs."""
    result = snapshot["result"]
    thumbnails = [{k: v for k, v in t.items() if not k.endswith("_url")}
                  for t in result["thumbnails"]]
    return {**snapshot, "result": {**result, "thumbnails": thumbnails}}


async def test_a_run_that_keeps_crashing_outside_its_steps_ends_as_internal_error(
    app, client
):
    """A fault after the steps (here: concluding raises) leaves the run to be taken over;
    after three crashes the operation ends failed with a retryable INTERNAL_ERROR and the
    stream closes, instead of being re-run forever."""
    kinds = app.state.services.operations.kinds
    real = kinds["thumbnail.generate"]

    class Crashing:
        name = real.name
        rerun_on_resume = real.rerun_on_resume

        def plan(self, operation):
            return real.plan(operation)

        def conclude(self, operation, outcome, steps):
            raise RuntimeError("a bug after the steps")

    kinds["thumbnail.generate"] = Crashing()
    created = await client.post("/v1/thumbnails", json={"title": "crash"},
                                headers={**auth(), "Prefer": "respond-async"})
    op_id = created.json()["operation_id"]
    events = await client.get(f"/v1/operations/{op_id}/events", headers=auth())
    assert "event: error" in events.text
    assert '"code":"INTERNAL_ERROR"' in events.text
    assert "a bug after the steps" not in events.text
    snapshot = (await client.get(f"/v1/operations/{op_id}", headers=auth())).json()
    assert snapshot["status"] == "failed"
    assert snapshot["error"]["retryable"] is True
    assert events.text.count("event: operation") == 3  # first run and two takeovers


async def test_a_render_left_behind_by_a_killed_owner_is_removed_when_the_run_ends_without_it(
    app, client: httpx.AsyncClient,
):
    """An owner killed between storing a render and its checkpoint leaves the image with
    no row; the run that ends without that render (here: cancelled before it ran again)
    removes it, and keeps nothing else it did not deliver."""
    from service._errors import NotFound
    from service._storage import thumbnail_keys
    from service.operations._thumbnails import thumbnail_id

    svc = app.state.services
    op, _ = await svc.store.create_operation(
        user_id="user-1", kind="thumbnail.generate",
        input={"title": "Cut by a kill", "variations": 1})
    left = thumbnail_keys("user-1", thumbnail_id(op.id, "v1"))["image"]
    await svc.storage.put(left, b"\x89PNG left behind", "image/png")
    await svc.store.request_cancel(op.id)
    await svc.operations.start(op.id)
    ended = await svc.operations.wait_until_finished(op.id, 30)
    assert ended is not None
    assert ended.operation.status == "cancelled"
    with pytest.raises(NotFound):
        await svc.storage.get(left)


async def test_an_operation_created_as_shutdown_begins_is_freed_not_held(app, client):
    """An operation is created held by the instance that will run it; when a shutdown
    begins between its creation and its run, the instance frees it at once instead of
    holding it until its lease expires (another instance takes it over)."""
    operations = app.state.services.operations
    op, created = await operations.create(user_id="user-1", kind="thumbnail.generate",
                                          input={"title": "Just in time"},
                                          idempotency_key=None)
    assert created
    assert op.lease_owner == operations.runner.owner
    operations.accepting = False
    await operations.start(op.id, created=op)
    for _ in range(100):
        current = await operations.store.get_operation(op.id)
        if current.lease_owner is None:
            break
        await asyncio.sleep(0.02)
    assert current.lease_owner is None
    assert current.status == "pending"
