"""One set of books: ViewBait's tiers, prices, credits and thumbnails, used in place by
the service (in process, on a database shaped like ViewBait's)."""

from __future__ import annotations

import asyncio
import base64
import io
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from PIL import Image

from checkpoints import create_engine
from service.accounts import CACHE_TTL_S, ViewBaitAccounts
from tests.service.conftest import auth
from tests.service.viewbait.conftest import HEATMAP_URL, IMAGE_URL

pytestmark = pytest.mark.anyio


def png(width: int = 64, height: int = 36, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def image_answer(data: bytes | None = None) -> httpx.Response:
    return httpx.Response(200, json={"candidates": [{"content": {"parts": [
        {"inlineData": {"mimeType": "image/png",
                        "data": base64.b64encode(data or png()).decode()}},
    ]}, "finishReason": "STOP"}]})


BLOCKED = httpx.Response(200, json={"promptFeedback": {"blockReason": "SAFETY"}})
GENERATE = {"title": "I tried every camera", "style": "bold", "palette": ["red", "gold"],
            "emotion": "shocked", "resolution": "2K", "aspect_ratio": "1:1", "variations": 2}


async def test_two_variations_at_2k_for_a_starter_user_are_charged_and_listed_in_viewbait(
    api, edge, viewbait, viewbait_env
):
    """A starter user's 2 × 2K: one `generation` charge of 4 through ViewBait's function,
    the balance in `user_subscriptions` exact, two rows in `public.thumbnails` with the
    request's details and URLs, images at ViewBait's storage paths."""
    edge.post(IMAGE_URL).mock(return_value=image_answer(png(200, 200)))
    user = await viewbait.user("prod_live_starter", credits=10)
    project = str(uuid.uuid4())
    done = await api.post("/v1/thumbnails", json={**GENERATE, "projectId": project},
                          headers=auth(user))
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    assert op["status"] == "succeeded"
    assert op["result"]["credits_used"] == 4
    assert op["result"]["credits_remaining"] == 6
    assert await viewbait.credits(user) == 6
    [charge] = await viewbait.transactions(user)
    assert (charge["amount"], charge["type"]) == (-4, "generation")
    assert charge["description"] == (
        "Thumbnail generation: 2 thumbnails at 2K, “I tried every camera”")
    assert await viewbait.ledger(op["id"]) == [(f"op:{op['id']}:reserve", -4)]
    rows = await viewbait.thumbnails(user)
    assert sorted(str(r["id"]) for r in rows) == sorted(t["id"] for t in op["result"]["thumbnails"])
    for row in rows:
        assert (row["title"], row["style"], row["palette"], row["emotion"]) == (
            "I tried every camera", "bold", "red, gold", "shocked")
        assert (row["aspect_ratio"], row["resolution"], row["has_watermark"]) == (
            "1:1", "2K", False)
        assert str(row["project_id"]) == project
        base = f"/v1/files/thumbnails/{user}/{row['id']}/"
        assert row["image_url"].startswith(f"{base}thumbnail.png?")
        assert row["thumbnail_400w_url"].startswith(f"{base}thumbnail-400w.jpg?")
        assert row["thumbnail_800w_url"].startswith(f"{base}thumbnail-800w.jpg?")
        image = await api.get(row["image_url"])
        assert image.status_code == 200
        assert image.content.startswith(b"\x89PNG")
    account = (await api.get("/v1/account", headers=auth(user))).json()
    assert account == {"user_id": user, "tier": "starter", "credits_remaining": 6}


async def test_a_variation_that_fails_for_good_is_refunded_through_viewbaits_function(
    api, edge, viewbait
):
    """One of two variations blocked: partial; the reserve of 4 and a `refund` of 2 in
    ViewBait's history, so the net charge is what was delivered."""
    edge.post(IMAGE_URL).mock(side_effect=[image_answer(png(200, 200)), BLOCKED])
    user = await viewbait.user("prod_live_starter", credits=10)
    done = await api.post("/v1/thumbnails", json=GENERATE, headers=auth(user))
    op = done.json()["operation"]
    assert op["status"] == "partial"
    assert op["result"]["credits_used"] == 2
    assert await viewbait.credits(user) == 8
    assert [(t["amount"], t["type"]) for t in await viewbait.transactions(user)] == [
        (-4, "generation"), (2, "refund")]
    assert await viewbait.ledger(op["id"]) == [(f"op:{op['id']}:reserve", -4),
                                               (f"op:{op['id']}:refund", 2)]
    assert len(await viewbait.thumbnails(user)) == 1


async def viewbait_made(viewbait, env, user: str, colour: str = "blue") -> str:
    """A thumbnail ViewBait itself made: its row (no resolution or ratio recorded) and its
    image at ViewBait's storage path, which the row's signed Supabase URL names."""
    thumb = str(uuid.uuid4())
    path = Path(env["DATA_DIR"]) / "objects" / "thumbnails" / user / thumb / "thumbnail.png"
    path.parent.mkdir(parents=True)
    path.write_bytes(png(320, 180, colour))
    url = (f"https://project.supabase.co/storage/v1/object/sign/thumbnails/{user}/{thumb}/"
           "thumbnail.png?token=signed")
    await viewbait.fetch("INSERT INTO public.thumbnails (id, user_id, title, image_url) "
                         "VALUES ($1, $2, 'Made by ViewBait', $3)",
                         uuid.UUID(thumb), uuid.UUID(user), url)
    return thumb


async def test_viewbaits_own_thumbnails_are_edited_and_heatmapped_by_id(
    api, edge, viewbait, viewbait_env
):
    """An edit of a thumbnail ViewBait made reads its row and image, is charged as an
    `edit` of that thumbnail, and its result is a new row; a heatmap by id works too."""
    edit = edge.post(IMAGE_URL).mock(return_value=image_answer(png(320, 180, "green")))
    heat = edge.post(HEATMAP_URL).mock(return_value=image_answer(png(320, 180, "orange")))
    user = await viewbait.user("prod_live_advanced", credits=10)
    source = await viewbait_made(viewbait, viewbait_env, user)
    done = await api.post(f"/v1/thumbnails/{source}/edits", json={"editPrompt": "add fire"},
                          headers=auth(user))
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    [made] = op["result"]["thumbnails"]
    assert edit.call_count == 1
    assert await viewbait.credits(user) == 8
    [charge] = await viewbait.transactions(user)
    assert (charge["amount"], charge["type"], str(charge["thumbnail_id"])) == (-2, "edit", source)
    assert charge["description"] == "Thumbnail edit: “Made by ViewBait”"
    rows = {str(r["id"]): r for r in await viewbait.thumbnails(user)}
    assert set(rows) == {source, made["id"]}
    assert (rows[made["id"]]["title"], rows[made["id"]]["resolution"],
            rows[made["id"]]["aspect_ratio"]) == ("Made by ViewBait", "1K", "16:9")
    heatmap = await api.post("/v1/heatmaps", json={"thumbnailId": source}, headers=auth(user))
    assert heatmap.status_code == 200, heatmap.text
    assert heat.call_count == 1


async def test_a_failed_edit_is_refunded_through_viewbaits_function(
    api, edge, viewbait, viewbait_env
):
    """A blocked edit: 422, and ViewBait's history shows the edit's charge and its refund;
    the balance is back where it was."""
    edge.post(IMAGE_URL).mock(return_value=BLOCKED)
    user = await viewbait.user("prod_live_starter", credits=5)
    source = await viewbait_made(viewbait, viewbait_env, user)
    failed = await api.post(f"/v1/thumbnails/{source}/edits", json={"prompt": "x"},
                            headers=auth(user))
    assert failed.status_code == 422
    assert failed.json()["code"] == "CONTENT_BLOCKED"
    assert await viewbait.credits(user) == 5
    assert [(t["amount"], t["type"]) for t in await viewbait.transactions(user)] == [
        (-2, "edit"), (2, "refund")]
    assert len(await viewbait.thumbnails(user)) == 1


async def test_a_balance_too_low_is_a_402_before_anything_is_written(api, edge, viewbait):
    """1 credit left for a 2K thumbnail: 402 INSUFFICIENT_CREDITS, no operation, no
    provider call, nothing in ViewBait's history."""
    render = edge.post(IMAGE_URL).mock(return_value=image_answer())
    user = await viewbait.user("prod_live_starter", credits=1)
    refused = await api.post("/v1/thumbnails", json={"title": "t", "resolution": "2K"},
                             headers=auth(user))
    assert refused.status_code == 402
    assert refused.json()["code"] == "INSUFFICIENT_CREDITS"
    assert render.call_count == 0
    assert await viewbait.transactions(user) == []
    assert await viewbait.value("SELECT count(*) FROM viewbait_ai.operations") == 0


async def wait_for_a_lock_waiter(viewbait) -> None:
    """Until a session of the database waits for a row lock (the service's charge)."""
    for _ in range(500):
        if await viewbait.value("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND wait_event_type = 'Lock'"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no session ever waited for the lock")


async def test_insufficient_from_viewbaits_function_is_a_402_before_any_provider_call(
    api, edge, viewbait
):
    """The balance is spent elsewhere between the request's check and the charge:
    `decrement_credits_atomic` answers INSUFFICIENT, the run ends 402
    INSUFFICIENT_CREDITS, the provider is never called and nothing is charged."""
    render = edge.post(IMAGE_URL).mock(return_value=image_answer())
    user = await viewbait.user("prod_live_starter", credits=10)
    elsewhere = await asyncpg.connect(viewbait.dsn)
    try:
        async with elsewhere.transaction():
            await elsewhere.execute("SELECT 1 FROM public.user_subscriptions WHERE user_id = $1 "
                                    "FOR UPDATE", uuid.UUID(user))
            request = asyncio.create_task(
                api.post("/v1/thumbnails", json={"title": "t"}, headers=auth(user)))
            await wait_for_a_lock_waiter(viewbait)
            await elsewhere.execute("UPDATE public.user_subscriptions SET credits_remaining = 0 "
                                    "WHERE user_id = $1", uuid.UUID(user))
    finally:
        await elsewhere.close()
    answer = await request
    assert answer.status_code == 402, answer.text
    assert answer.json()["code"] == "INSUFFICIENT_CREDITS"
    assert render.call_count == 0
    assert await viewbait.transactions(user) == []


async def test_a_stripe_reset_of_the_balance_between_operations_is_honoured(
    api, edge, viewbait
):
    """ViewBait's webhook resets `credits_remaining` to a new period's 100: the next
    operation is charged from 100 and the account shows 99; no other balance exists."""
    edge.post(IMAGE_URL).mock(return_value=image_answer())
    user = await viewbait.user("prod_live_starter", credits=3)
    first = await api.post("/v1/thumbnails", json={"title": "one"}, headers=auth(user))
    assert first.json()["operation"]["result"]["credits_remaining"] == 2
    await viewbait.fetch("UPDATE public.user_subscriptions SET credits_remaining = 100, "
                         "credits_total = 100 WHERE user_id = $1", uuid.UUID(user))
    second = await api.post("/v1/thumbnails", json={"title": "two"}, headers=auth(user))
    assert second.json()["operation"]["result"]["credits_remaining"] == 99
    account = (await api.get("/v1/account", headers=auth(user))).json()
    assert account["credits_remaining"] == 99
    assert await viewbait.value("SELECT count(*) FROM viewbait_ai.accounts") == 0


async def test_a_tier_and_a_price_change_are_seen_within_the_cache_window(
    api, edge, viewbait, clock
):
    """A free user (watermarked, 1K only) upgraded to starter and 2K made dearer: within
    the window the cached tier still refuses 2K; once it has passed (at most 60 s), 2K is
    allowed at the new price and the thumbnail is no longer watermarked."""
    edge.post(IMAGE_URL).mock(return_value=image_answer())
    user = await viewbait.user(None, credits=10)
    free = await api.post("/v1/thumbnails", json={"title": "free"}, headers=auth(user))
    assert free.status_code == 200, free.text
    body = {"title": "t", "resolution": "2K"}
    refused = await api.post("/v1/thumbnails", json=body, headers=auth(user))
    assert refused.status_code == 403
    assert refused.json()["code"] == "TIER_LIMIT"
    await viewbait.fetch("UPDATE public.user_subscriptions SET product_id = "
                         "'prod_live_starter' WHERE user_id = $1", uuid.UUID(user))
    await viewbait.fetch("UPDATE public.subscription_settings SET value = '3' "
                         "WHERE key = 'resolution_credits_2k'")
    clock.advance(CACHE_TTL_S - 1)
    assert (await api.post("/v1/thumbnails", json=body, headers=auth(user))).status_code == 403
    clock.advance(1)
    allowed = await api.post("/v1/thumbnails", json=body, headers=auth(user))
    assert allowed.status_code == 200, allowed.text
    assert allowed.json()["operation"]["result"]["credits_used"] == 3
    assert await viewbait.credits(user) == 10 - 1 - 3
    watermarks = {r["resolution"]: r["has_watermark"] for r in await viewbait.thumbnails(user)}
    assert watermarks == {"1K": True, "2K": False}
    assert CACHE_TTL_S <= 60


async def test_stripe_test_mode_matches_the_test_product_ids(viewbait, viewbait_url):
    """With STRIPE_MODE=test a user's product matches `test_product_id` (live: no tier
    has it, so the free tier)."""
    user = await viewbait.user("prod_test_pro", credits=10)
    engine = create_engine(viewbait_url, schema="viewbait_ai")
    try:
        test = await ViewBaitAccounts(engine, schema="viewbait_ai", stripe_mode="test").get(user)
        live = await ViewBaitAccounts(engine, schema="viewbait_ai", stripe_mode="live").get(user)
    finally:
        await engine.dispose()
    assert (test.tier.name, test.tier.max_variations, test.tier.video_analysis) == (
        "pro", 4, True)
    assert (live.tier.name, live.tier.resolutions, live.credits_remaining) == (
        "free", ("1K",), 10)


async def test_someone_elses_thumbnail_is_not_found_for_edits_and_heatmaps(
    api, edge, viewbait, viewbait_env
):
    """Another ViewBait user's thumbnail id: 404 for an edit, a heatmap by id and a heatmap
    of an inline image naming it; a malformed id is 404 too. Nothing is charged."""
    render = edge.post(IMAGE_URL).mock(return_value=image_answer())
    heat = edge.post(HEATMAP_URL).mock(return_value=image_answer())
    owner = await viewbait.user("prod_live_pro", credits=10)
    other = await viewbait.user("prod_live_pro", credits=10)
    theirs = await viewbait_made(viewbait, viewbait_env, owner)
    inline = {"image_base64": base64.b64encode(png()).decode(), "mime_type": "image/png"}
    answers = [
        await api.post(f"/v1/thumbnails/{theirs}/edits", json={"prompt": "x"},
                       headers=auth(other)),
        await api.post("/v1/heatmaps", json={"thumbnail_id": theirs}, headers=auth(other)),
        await api.post("/v1/heatmaps", json={**inline, "thumbnail_id": theirs},
                       headers=auth(other)),
        await api.post("/v1/thumbnails/not-a-uuid/edits", json={"prompt": "x"},
                       headers=auth(other)),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert {a.json()["code"] for a in answers} == {"NOT_FOUND"}
    assert (render.call_count, heat.call_count) == (0, 0)
    assert await viewbait.credits(other) == 10
    assert await viewbait.value("SELECT count(*) FROM viewbait_ai.operations") == 0


async def test_a_token_whose_subject_is_not_a_viewbait_user_is_refused(api):
    """ViewBait's user ids are UUIDs: another subject is 401 for creations and the account."""
    created = await api.post("/v1/thumbnails", json={"title": "t"}, headers=auth("demo-user"))
    account = await api.get("/v1/account", headers=auth("demo-user"))
    assert (created.status_code, account.status_code) == (401, 401)


async def test_a_resumed_operation_settles_again_under_keys_of_its_own(api, edge, viewbait):
    """A render failing every try: the operation fails retryably and its reserve is
    refunded; `resume` reserves again (`…:reserve:2`, marked resumed in ViewBait's
    history) and delivers: the net charge is the one thumbnail delivered."""
    render = edge.post(IMAGE_URL).mock(return_value=httpx.Response(500, json={}))
    user = await viewbait.user("prod_live_starter", credits=10)
    failed = await api.post("/v1/thumbnails", json={"title": "again"}, headers=auth(user))
    assert failed.status_code == 503
    op_id = failed.headers["Location"].rsplit("/", 1)[-1]
    render.mock(return_value=image_answer())
    resumed = await api.post(f"/v1/operations/{op_id}/resume", headers=auth(user))
    assert resumed.json()["operation"]["status"] == "succeeded", resumed.text
    assert await viewbait.credits(user) == 9
    assert await viewbait.ledger(op_id) == [
        (f"op:{op_id}:reserve", -1), (f"op:{op_id}:refund", 1), (f"op:{op_id}:reserve:2", -1)]
    history = await viewbait.transactions(user)
    assert [(t["amount"], t["type"]) for t in history] == [
        (-1, "generation"), (1, "refund"), (-1, "generation")]
    assert history[-1]["description"].endswith("(resumed)")
