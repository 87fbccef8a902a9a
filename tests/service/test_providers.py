"""Real providers at their HTTP edge (respx): retries, error codes, fallback, partial
success, edits, heatmaps and video analysis — in process, on both databases."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import respx
from PIL import Image

import ratelimit
from service import Settings, create_app
from service.providers import RetryPolicy
from tests.service.conftest import auth, in_process
from tests.service.sse import SSE, events
from tests.service.test_streams import set_account

pytestmark = pytest.mark.anyio

GEMINI = "https://gemini.test"
OPENAI = "https://openai.test"
YOUTUBE = "https://youtube.test/v3"
IMAGE_URL = f"{GEMINI}/v1beta/models/gemini-3-pro-image-preview:generateContent"
HEATMAP_URL = f"{GEMINI}/v1beta/models/gemini-3.1-flash-image-preview:generateContent"
TEXT_URL = f"{GEMINI}/v1beta/models/gemini-2.5-flash:generateContent"


def png(width: int = 64, height: int = 36, colour: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def image_answer(data: bytes | None = None) -> httpx.Response:
    data = data or png()
    return httpx.Response(200, json={"candidates": [{"content": {"parts": [
        {"text": "here you go"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(data).decode()}},
    ]}, "finishReason": "STOP"}]})


class Sleeps:
    """The retry policy's sleep: records the delays, never sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def provider_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "IMAGE_PROVIDERS": "gemini,openai", "GEMINI_API_KEY": "g-key",
            "GEMINI_BASE_URL": GEMINI, "OPENAI_API_KEY": "o-key", "OPENAI_BASE_URL": OPENAI,
            "YOUTUBE_API_KEY": "y-key", "YOUTUBE_BASE_URL": YOUTUBE}


@pytest.fixture
def edge() -> respx.MockRouter:
    """The providers' HTTP edge, behind the app's own transport (nothing is patched
    globally); a request nothing is routed for is an error."""
    return respx.MockRouter(assert_all_called=False)


@pytest.fixture
async def served(
    provider_env, sleeps, edge
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app in process with a retry policy that never sleeps (no jitter), its outgoing
    HTTP sent to `edge`, and a client of it."""
    policy = RetryPolicy(sleep=sleeps, jitter=lambda _wait: 0.0)
    app = create_app(Settings.from_env(provider_env), retry=policy,
                     transport=httpx.MockTransport(edge.async_handler))
    async with in_process(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                     timeout=60) as client:
            yield app, client


@pytest.fixture
def api(served) -> httpx.AsyncClient:
    return served[1]


async def log_of(api: httpx.AsyncClient, op_id: str, user: str = "user-1") -> list[SSE]:
    async with api.stream("GET", f"/v1/operations/{op_id}/events",
                          headers=auth(user)) as response:
        return [e async for e in events(response)]


async def credits(api: httpx.AsyncClient, user: str = "user-1") -> int:
    return (await api.get("/v1/account", headers=auth(user))).json()["credits_remaining"]


async def test_rate_limited_twice_then_success_shows_two_retries_with_their_delays(
    api, edge, sleeps
):
    """429 with Retry-After 7, then 3, then an image: succeeded; two retry events whose
    delays are the Retry-After values (no real sleeping)."""
    edge.post(IMAGE_URL).mock(side_effect=[
        httpx.Response(429, headers={"Retry-After": "7"},
                       json={"error": {"status": "RESOURCE_EXHAUSTED", "message": "slow"}}),
        httpx.Response(429, headers={"Retry-After": "3"},
                       json={"error": {"status": "RESOURCE_EXHAUSTED", "message": "slow"}}),
        image_answer(),
    ])
    done = await api.post("/v1/thumbnails", json={"title": "retry"}, headers=auth())
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    assert op["status"] == "succeeded"
    retries = [e for e in await log_of(api, op["id"]) if e.event == "retry"]
    assert [(r.data["step"], r.data["attempt"], r.data["delay_s"]) for r in retries] == [
        ("v1/render", 2, 7.0), ("v1/render", 3, 3.0)]
    assert retries[0].data["error"]["code"] == "PROVIDER_RATE_LIMITED"
    assert sleeps.delays == [7.0, 3.0]
    sent = json.loads(edge.calls[0].request.content)
    assert sent["generationConfig"]["imageConfig"] == {"aspectRatio": "16:9",
                                                       "imageSize": "1K"}
    assert edge.calls[0].request.headers["x-goog-api-key"] == "g-key"


async def test_a_provider_failing_every_attempt_fails_retryably_and_resume_continues(
    api, edge, sleeps
):
    """500 on every attempt (both providers): terminal PROVIDER_UNAVAILABLE, retryable,
    credits refunded; a resume calls the provider only for the unfinished render."""
    gemini = edge.post(IMAGE_URL).mock(return_value=httpx.Response(500, json={}))
    openai = edge.post(f"{OPENAI}/v1/images/generations").mock(
        return_value=httpx.Response(503, json={}))
    failed = await api.post("/v1/thumbnails", json={"title": "down"}, headers=auth())
    assert failed.status_code == 503
    assert failed.json() == {"error": "OpenAI is unavailable (HTTP 503)",
                             "code": "PROVIDER_UNAVAILABLE", "retryable": True}
    assert (gemini.call_count, openai.call_count) == (4, 4)
    assert len(sleeps.delays) == 6  # three retries per provider
    assert await credits(api) == 10
    location = failed.headers["Location"]
    log = await log_of(api, location.rsplit("/", 1)[1])
    fallback = [e for e in log if e.event == "retry" and e.data.get("provider") == "openai"]
    assert len(fallback) == 1

    gemini.mock(return_value=image_answer())
    resumed = await api.post(f"{location}/resume", headers=auth())
    assert resumed.status_code == 200, resumed.text
    op = resumed.json()["operation"]
    assert op["status"] == "succeeded"
    assert gemini.call_count == 5
    assert await credits(api) == 9
    again = await api.post(f"{location}/resume", headers=auth())
    assert again.status_code == 409
    assert again.json()["code"] == "OPERATION_NOT_RESUMABLE"


async def test_a_resume_needs_a_free_concurrency_slot(served, edge, sleeps):
    """A resumed run is work in flight again: with both of the user's generate slots held,
    the resume is 429; once one frees, the resume runs."""
    app, api = served
    edge.post(IMAGE_URL).mock(return_value=httpx.Response(500, json={}))
    edge.post(f"{OPENAI}/v1/images/generations").mock(return_value=httpx.Response(503, json={}))
    failed = await api.post("/v1/thumbnails", json={"title": "down"}, headers=auth())
    assert failed.status_code == 503
    location = failed.headers["Location"]
    limiter = app.state.services.limiter
    held = []
    for _ in range(200):  # the failed run frees its own slot just after it answers
        with contextlib.suppress(ratelimit.RateLimitExceeded):
            held.append(await limiter.acquire_slot("generate", "user-1"))
        if len(held) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(held) == 2
    edge.post(IMAGE_URL).mock(return_value=image_answer())
    refused = await api.post(f"{location}/resume", headers=auth())
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.headers["Retry-After"] == "1"
    status = (await api.get(location, headers=auth())).json()["status"]
    assert status == "failed"  # not restarted
    await held[0].release()
    resumed = await api.post(f"{location}/resume", headers=auth())
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["operation"]["status"] == "succeeded"
    await held[1].release()


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (httpx.Response(200, json={"promptFeedback": {"blockReason": "SAFETY"}}),
         "CONTENT_BLOCKED"),
        (httpx.Response(200, json={"candidates": [{"finishReason": "IMAGE_SAFETY",
                                                   "content": {"parts": []}}]}),
         "CONTENT_BLOCKED"),
        (httpx.Response(429, json={"error": {
            "status": "RESOURCE_EXHAUSTED",
            "message": "Your prepayment credits are depleted. Please go to AI Studio to "
                       "manage your project and billing."}}),
         "PROVIDER_BILLING_EXHAUSTED"),
    ],
    ids=["block-reason", "image-safety", "billing"],
)
async def test_blocked_content_and_exhausted_billing_are_not_retried(
    api, edge, sleeps, provider_env, answer, code
):
    """No retry, the right code, credits refunded; the message shows nothing raw.
    Exhausted billing is something another provider may not have: OpenAI is tried next
    (here exhausted too: insufficient_quota), blocked content is not."""
    route = edge.post(IMAGE_URL).mock(return_value=answer)
    openai = edge.post(f"{OPENAI}/v1/images/generations").mock(
        return_value=httpx.Response(429, json={"error": {
            "code": "insufficient_quota", "message": "You exceeded your current quota"}}))
    failed = await api.post("/v1/thumbnails", json={"title": "no"}, headers=auth())
    assert failed.json()["code"] == code
    assert failed.json()["retryable"] is False
    assert failed.status_code == (422 if code == "CONTENT_BLOCKED" else 503)
    assert route.call_count == 1
    assert openai.call_count == (1 if code == "PROVIDER_BILLING_EXHAUSTED" else 0)
    assert sleeps.delays == []
    assert "prepayment" not in failed.text
    assert "quota" not in failed.text
    assert await credits(api) == 10


async def test_an_unavailable_gemini_falls_back_to_openai(api, edge):
    """Gemini 503 on every try → OpenAI generates; the events say so."""
    edge.post(IMAGE_URL).mock(return_value=httpx.Response(503, json={}))
    openai = edge.post(f"{OPENAI}/v1/images/generations").mock(
        return_value=httpx.Response(200, json={"data": [
            {"b64_json": base64.b64encode(png(150, 100, "blue")).decode()}]}))
    done = await api.post("/v1/thumbnails", json={"title": "fallback"}, headers=auth())
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    assert op["status"] == "succeeded"
    sent = json.loads(openai.calls[0].request.content)
    assert (sent["model"], sent["size"], sent["quality"]) == ("gpt-image-2", "1536x1024",
                                                              "medium")
    log = await log_of(api, op["id"])
    fallback = [e for e in log if e.event == "retry" and e.data.get("provider") == "openai"]
    assert fallback[0].data["error"]["code"] == "PROVIDER_UNAVAILABLE"
    (thumb,) = op["result"]["thumbnails"]
    assert (thumb["width"], thumb["height"]) == (150, 100)


async def test_one_blocked_variation_of_three_gives_a_partial_result(api, edge, provider_env):
    """3 variations, the second blocked: `partial`, 2 thumbnails, credits for 2."""
    await set_account(provider_env, "user-1", "advanced", 10)

    def answer(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["contents"][0]["parts"][0]["text"]
        if "Variation 2" in prompt:
            return httpx.Response(200, json={"promptFeedback": {"blockReason": "OTHER"}})
        return image_answer()

    edge.post(IMAGE_URL).mock(side_effect=answer)
    done = await api.post("/v1/thumbnails", json={"title": "three", "variations": 3},
                          headers=auth())
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    assert op["status"] == "partial"
    assert len(op["result"]["thumbnails"]) == 2
    assert op["result"]["credits_used"] == 2
    steps = {s["key"]: s["status"] for s in op["steps"]}
    assert steps["v2/render"] == "failed"
    assert steps["v2/variants"] == steps["v2/record"] == "skipped"
    assert await credits(api) == 8


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.png", "http://169.254.169.254/latest", "http://[::1]/a.png",
    "http://10.0.0.8/a.png", "http://[::ffff:127.0.0.1]/a.png", "http://[2002:7f00:1::]/a.png",
    "http://[64:ff9b::7f00:1]/a.png", "http://[::127.0.0.1]/a.png",
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/a.png",
])
async def test_image_urls_on_private_addresses_are_refused(api, edge, provider_env, url):
    """Loopback, link-local (cloud metadata) and private hosts → 400 before any write."""
    await set_account(provider_env, "user-1", "advanced", 10)
    for path, body in (("/v1/thumbnails", {"title": "t", "reference_images": [url]}),
                       ("/v1/heatmaps", {"image_url": url})):
        refused = await api.post(path, json=body, headers=auth())
        assert refused.status_code == 400, (path, refused.text)
        assert refused.json()["code"] == "VALIDATION_ERROR"
    assert len(edge.calls) == 0


async def _generated_thumbnail(api, edge) -> str:
    edge.post(IMAGE_URL).mock(return_value=image_answer(png(320, 180, "green")))
    done = await api.post("/v1/thumbnails", json={"title": "source"}, headers=auth())
    return str(done.json()["operation"]["result"]["thumbnails"][0]["id"])


async def test_an_edit_makes_a_new_thumbnail_from_the_callers_own(api, edge):
    """The source goes to Gemini inline with the instruction; 2 credits; a new thumbnail
    row; someone else's thumbnail is 404."""
    source = await _generated_thumbnail(api, edge)
    edit = edge.post(IMAGE_URL).mock(return_value=image_answer(png(320, 180, "purple")))
    done = await api.post(f"/v1/thumbnails/{source}/edits",
                          json={"prompt": "add fireworks"}, headers=auth())
    assert done.status_code == 200, done.text
    op = done.json()["operation"]
    assert op["kind"] == "thumbnail.edit"
    assert op["status"] == "succeeded"
    assert op["result"]["source_thumbnail_id"] == source
    (thumb,) = op["result"]["thumbnails"]
    assert thumb["id"] != source
    assert op["result"]["credits_used"] == 2
    parts = json.loads(edit.calls[-1].request.content)["contents"][0]["parts"]
    assert "add fireworks" in parts[0]["text"]
    assert parts[1]["inlineData"]["mimeType"] == "image/png"
    assert await credits(api) == 10 - 1 - 2
    other = await api.post(f"/v1/thumbnails/{source}/edits", json={"prompt": "x"},
                           headers=auth("someone-else"))
    assert other.status_code == 404


async def test_an_edit_that_fails_for_good_is_refunded(api, edge):
    """A blocked edit: 422 CONTENT_BLOCKED and the 2 reserved credits come back."""
    source = await _generated_thumbnail(api, edge)
    edge.post(IMAGE_URL).mock(return_value=httpx.Response(
        200, json={"promptFeedback": {"blockReason": "SAFETY"}}))
    failed = await api.post(f"/v1/thumbnails/{source}/edits", json={"prompt": "x"},
                            headers=auth())
    assert failed.status_code == 422
    assert failed.json()["code"] == "CONTENT_BLOCKED"
    assert await credits(api) == 10 - 1


async def test_heatmaps_from_each_input_and_the_cache(api, edge, provider_env):
    """thumbnail_id, image_url and image_base64 each give a heatmap; the same image again
    is answered from the stored heatmap without a provider call."""
    await set_account(provider_env, "user-1", "advanced", 10)
    source = await _generated_thumbnail(api, edge)
    heat = edge.post(HEATMAP_URL).mock(return_value=image_answer(png(320, 180, "orange")))
    picture = png(200, 100, "yellow")
    edge.get("http://93.184.216.34/picture.png").mock(
        return_value=httpx.Response(200, content=picture,
                                    headers={"Content-Type": "image/png"}))
    bodies = [
        {"thumbnail_id": source},
        {"image_url": "http://93.184.216.34/picture.png"},
        {"image_base64": base64.b64encode(png(90, 90, "teal")).decode(),
         "mime_type": "image/png"},
    ]
    for body in bodies:
        done = await api.post("/v1/heatmaps", json=body, headers=auth())
        assert done.status_code == 200, done.text
        result = done.json()["operation"]["result"]
        assert result["mime_type"] == "image/png"
        image = await api.get(result["heatmap_url"])
        assert Image.open(io.BytesIO(image.content)).size == (320, 180)
    assert heat.call_count == 3
    # The picture again, now as base64: same bytes, same heatmap, no provider call.
    again = await api.post("/v1/heatmaps", json={
        "image_base64": base64.b64encode(picture).decode(), "mime_type": "image/png"},
        headers=auth())
    assert again.status_code == 200
    assert heat.call_count == 3
    log = await log_of(api, again.json()["operation"]["id"])
    rendered = [e for e in log if e.event == "step" and e.data["step"] == "render"
                and e.data["status"] == "completed"]
    assert rendered[0].data["output"]["cached"] is True


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"image_base64": base64.b64encode(b"\x89PNG" + b"0" * (11 * 1024 * 1024)).decode(),
          "mime_type": "image/png"}, 413),
        ({"image_base64": base64.b64encode(b"just some text").decode(),
          "mime_type": "image/png"}, 400),
        ({"image_base64": "not base64!!", "mime_type": "image/png"}, 400),
        ({"image_base64": base64.b64encode(png()).decode(), "mime_type": "image/jpeg"}, 400),
        ({"image_base64": base64.b64encode(png()).decode()}, 400),
        ({"thumbnail_id": "x", "image_url": "https://example.com/a.png"}, 400),
        ({}, 400),
        ({"thumbnail_id": "not-mine"}, 404),
    ],
    ids=["oversize", "not-an-image", "not-base64", "wrong-type", "no-mime", "two-inputs",
         "no-input", "unknown-thumbnail"],
)
async def test_bad_heatmap_input_is_refused_before_anything_is_written(
    api, edge, provider_env, body, status
):
    """Oversize → 413, non-image or malformed → 400, unknown thumbnail → 404."""
    await set_account(provider_env, "user-1", "pro", 10)
    refused = await api.post("/v1/heatmaps", json=body, headers=auth())
    assert refused.status_code == status, refused.text
    assert len(edge.calls) == 0


async def test_heatmaps_and_video_analysis_are_tier_gated(api, edge):
    """free: heatmap 403 TIER_LIMIT, video analysis 403 TIER_LIMIT."""
    for path, body in (("/v1/heatmaps", {"thumbnail_id": "x"}),
                       ("/v1/videos/analyses", {"video": "dQw4w9WgXcQ"})):
        refused = await api.post(path, json=body, headers=auth())
        assert refused.status_code == 403
        assert refused.json()["code"] == "TIER_LIMIT"


ANALYTICS = {
    "summary": "A song.", "topic": "music", "tone": "upbeat", "key_moments": "0:43 chorus",
    "hooks": "the dance", "duration_estimate": "3:33", "thumbnail_appeal_notes": "face",
    "content_type": "Music video",
    "characters": [{"name": "Singer", "scenes": [{"part": "0:00-3:33", "description": "sings"}]}],
    "places": [{"name": "Street", "scenes": [{"part": "Intro", "description": "walks"}]}],
}


def text_answer(text: str) -> httpx.Response:
    return httpx.Response(200, json={"candidates": [{"content": {"parts": [{"text": text}]},
                                                     "finishReason": "STOP"}]})


async def test_a_video_analysis_is_validated_and_cached(api, edge, provider_env):
    """A schema-valid answer gives the 10 fields (and YouTube metadata); the schema sent
    describes each field; the same video again is answered from the cache."""
    await set_account(provider_env, "user-1", "pro", 10)
    youtube = edge.get(f"{YOUTUBE}/videos").mock(return_value=httpx.Response(200, json={
        "items": [{"snippet": {"title": "Never Gonna", "channelTitle": "Rick"},
                   "contentDetails": {"duration": "PT3M33S"}}]}))
    gemini = edge.post(TEXT_URL).mock(return_value=text_answer(json.dumps(ANALYTICS)))
    done = await api.post("/v1/videos/analyses",
                          json={"video": "https://youtu.be/dQw4w9WgXcQ"}, headers=auth())
    assert done.status_code == 200, done.text
    result = done.json()["operation"]["result"]
    assert result["analytics"] == ANALYTICS
    assert result["video"]["title"] == "Never Gonna"
    assert result["video"]["duration_s"] == 213
    sent = json.loads(gemini.calls[0].request.content)
    assert sent["contents"][0]["parts"][0]["fileData"]["fileUri"] == (
        "https://www.youtube.com/watch?v=dQw4w9WgXcQ")
    assert sent["generationConfig"]["responseMimeType"] == "application/json"
    schema = sent["generationConfig"]["responseSchema"]
    assert set(schema["required"]) == set(ANALYTICS)
    # The schema tells the model what each field holds, as the prompt does.
    assert all(field["description"] for field in schema["properties"].values())
    assert youtube.calls[0].request.url.params["key"] == "y-key"
    again = await api.post("/v1/videos/analyses", json={"video": "dQw4w9WgXcQ"},
                           headers=auth())
    assert again.json()["operation"]["result"]["analytics"] == ANALYTICS
    assert gemini.call_count == 1


async def test_an_analysis_that_does_not_fit_the_schema_is_bad_output(api, edge, provider_env):
    """A JSON answer missing fields → 502 PROVIDER_BAD_OUTPUT, raw text not shown."""
    await set_account(provider_env, "user-1", "pro", 10)
    edge.get(f"{YOUTUBE}/videos").mock(return_value=httpx.Response(200, json={
        "items": [{"snippet": {}, "contentDetails": {}}]}))
    edge.post(TEXT_URL).mock(return_value=text_answer('{"summary": "secret raw text"}'))
    failed = await api.post("/v1/videos/analyses", json={"video": "dQw4w9WgXcQ"},
                            headers=auth())
    assert failed.status_code == 502
    assert failed.json()["code"] == "PROVIDER_BAD_OUTPUT"
    assert "secret raw text" not in failed.text


@pytest.mark.parametrize("video", ["https://evil.example/watch?v=dQw4w9WgXcQ", "short",
                                   "https://www.youtube.com/watch?v=tooshort"])
async def test_video_ids_and_urls_are_validated(api, edge, provider_env, video):
    """Only an 11-character id or a YouTube video URL is accepted (400 otherwise)."""
    await set_account(provider_env, "user-1", "pro", 10)
    refused = await api.post("/v1/videos/analyses", json={"video": video}, headers=auth())
    assert refused.status_code == 400
    assert len(edge.calls) == 0


async def test_video_analysis_without_gemini_is_not_configured(client, service_env):
    """Only the local provider: 503 PROVIDER_NOT_CONFIGURED, nothing written."""
    await set_account(service_env, "user-1", "pro", 10)
    refused = await client.post("/v1/videos/analyses", json={"video": "dQw4w9WgXcQ"},
                                headers=auth())
    assert refused.status_code == 503
    assert refused.json()["code"] == "PROVIDER_NOT_CONFIGURED"


async def test_the_local_provider_draws_a_saliency_heatmap_and_edits(client, service_env):
    """Offline: a heatmap over an uploaded image (hot where the contrast is), and an edit
    of a generated thumbnail."""
    await set_account(service_env, "user-1", "advanced", 10)
    picture = Image.new("RGB", (320, 180), (20, 20, 60))
    for x in range(140, 180):
        for y in range(70, 110):
            picture.putpixel((x, y), (255, 255, 255))
    out = io.BytesIO()
    picture.save(out, "PNG")
    done = await client.post("/v1/heatmaps", json={
        "image_base64": base64.b64encode(out.getvalue()).decode(), "mime_type": "image/png"},
        headers=auth())
    assert done.status_code == 200, done.text
    heat = Image.open(io.BytesIO((await client.get(
        done.json()["operation"]["result"]["heatmap_url"])).content)).convert("RGB")
    assert heat.size == (320, 180)

    def warmth(box: tuple[int, int, int, int]) -> float:
        """Mean red minus blue: the ramp runs from blue (ignored) to red (noticed)."""
        pixels = np.asarray(heat.crop(box), dtype=np.float64)
        return float((pixels[..., 0] - pixels[..., 2]).mean())

    # The square's edges draw the eye; a flat corner does not.
    assert warmth((130, 60, 190, 120)) > warmth((0, 140, 40, 180)) + 50

    generated = await client.post("/v1/thumbnails", json={"title": "to edit"}, headers=auth())
    source = generated.json()["operation"]["result"]["thumbnails"][0]["id"]
    edited = await client.post(f"/v1/thumbnails/{source}/edits", json={"prompt": "more red"},
                               headers=auth())
    assert edited.status_code == 200, edited.text
    assert edited.json()["operation"]["result"]["credits_used"] == 2


async def test_reference_images_go_to_gemini_inline(api, edge, provider_env):
    """reference_images are fetched (public address) and sent as inlineData parts."""
    reference = png(40, 40, "white")
    edge.get("http://93.184.216.34/face.png").mock(return_value=httpx.Response(
        200, content=reference, headers={"Content-Type": "image/png"}))
    generate = edge.post(IMAGE_URL).mock(return_value=image_answer())
    done = await api.post("/v1/thumbnails", json={
        "title": "with a face", "reference_images": ["http://93.184.216.34/face.png"]},
        headers=auth())
    assert done.status_code == 200, done.text
    parts = json.loads(generate.calls[0].request.content)["contents"][0]["parts"]
    assert "1 attached reference image" in parts[0]["text"]
    assert base64.b64decode(parts[1]["inlineData"]["data"]) == reference


def quota_429(retry_delay: str | None = "26s") -> httpx.Response:
    """Gemini's ordinary quota answer, as it sends it (the message speaks of billing as a
    matter of course; RetryInfo says when to come back)."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
         "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                        "generate_content_free_tier_requests",
                         "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}]},
        {"@type": "type.googleapis.com/google.rpc.Help",
         "links": [{"description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
    ]
    if retry_delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": retry_delay})
    return httpx.Response(429, json={"error": {
        "code": 429, "status": "RESOURCE_EXHAUSTED", "details": details,
        "message": "You exceeded your current quota, please check your plan and billing "
                   "details. For more information on this error, head to: "
                   "https://ai.google.dev/gemini-api/docs/rate-limits."}})


async def test_an_ordinary_quota_429_is_retried_after_its_retry_delay(api, edge, sleeps):
    """A quota 429 mentioning "plan and billing details" is a rate limit, not a billing
    stop: retried after the body's RetryInfo delay (26 s, then 0.5 s), then succeeds."""
    route = edge.post(IMAGE_URL).mock(side_effect=[
        quota_429("26s"), quota_429("0.5s"), image_answer()])
    done = await api.post("/v1/thumbnails", json={"title": "quota"}, headers=auth())
    assert done.status_code == 200, done.text
    assert done.json()["operation"]["status"] == "succeeded"
    assert route.call_count == 3
    assert sleeps.delays == [26.0, 0.5]
    retries = [e for e in await log_of(api, done.json()["operation"]["id"])
               if e.event == "retry"]
    assert [r.data["error"]["code"] for r in retries] == ["PROVIDER_RATE_LIMITED"] * 2


async def test_a_quota_longer_than_the_budget_fails_retryably_and_resume_continues(
    api, edge, sleeps
):
    """A RetryInfo delay past what a call waits (here on both providers): the step fails
    as a retryable PROVIDER_RATE_LIMITED (with the delay for the client), and resume
    finishes the run."""
    route = edge.post(IMAGE_URL).mock(side_effect=[quota_429("3600s"), image_answer()])
    edge.post(f"{OPENAI}/v1/images/generations").mock(return_value=httpx.Response(
        429, headers={"Retry-After": "3600"},
        json={"error": {"code": "rate_limit_exceeded", "message": "Rate limit reached"}}))
    failed = await api.post("/v1/thumbnails", json={"title": "later"}, headers=auth())
    assert failed.status_code == 503
    assert failed.json()["code"] == "PROVIDER_RATE_LIMITED"
    assert failed.json()["retryable"] is True
    assert failed.json()["retry_after"] == 3600
    resumed = await api.post(failed.headers["Location"] + "/resume", headers=auth())
    assert resumed.status_code == 200
    assert resumed.json()["operation"]["status"] == "succeeded"
    assert route.call_count == 2
    assert await credits(api) == 9


@pytest.mark.parametrize(
    "reason",
    ["SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "IMAGE_PROHIBITED_CONTENT",
     "RECITATION", "IMAGE_RECITATION", "BLOCKLIST", "SPII"],
)
async def test_every_block_reason_is_one_call_and_a_refunded_422(api, edge, sleeps, reason):
    """Blocked output of any kind: CONTENT_BLOCKED after one call, no retry, no charge."""
    route = edge.post(IMAGE_URL).mock(return_value=httpx.Response(200, json={
        "candidates": [{"finishReason": reason, "content": {"parts": []}}]}))
    failed = await api.post("/v1/thumbnails", json={"title": "blocked"}, headers=auth())
    assert failed.status_code == 422
    assert failed.json()["code"] == "CONTENT_BLOCKED"
    assert route.call_count == 1
    assert sleeps.delays == []
    assert await credits(api) == 10


@pytest.mark.parametrize(
    "answer",
    [
        {"candidates": [{"finishReason": "NO_IMAGE", "content": {"parts": []}}]},
        {"candidates": [{"finishReason": "IMAGE_OTHER", "content": {"parts": []}}]},
        {"candidates": [{"finishReason": "STOP",
                         "content": {"parts": [{"text": "I cannot draw that."}]}}]},
    ],
    ids=["no-image", "image-other", "text-only"],
)
async def test_an_answer_without_an_image_is_retried_once(api, edge, sleeps, answer):
    """NO_IMAGE, IMAGE_OTHER or text without an image: PROVIDER_BAD_OUTPUT, tried twice
    in all (not four times), refunded."""
    route = edge.post(IMAGE_URL).mock(return_value=httpx.Response(200, json=answer))
    failed = await api.post("/v1/thumbnails", json={"title": "nothing"}, headers=auth())
    assert failed.json()["code"] == "PROVIDER_BAD_OUTPUT"
    assert route.call_count == 2
    assert len(sleeps.delays) == 1
    assert await credits(api) == 10


async def test_image_calls_send_viewbaits_generation_config(api, edge):
    """temperature, topK, topP and maxOutputTokens as ViewBait sends them, beside the
    image config."""
    route = edge.post(IMAGE_URL).mock(return_value=image_answer())
    await api.post("/v1/thumbnails", json={"title": "config", "aspect_ratio": "16:9"},
                   headers=auth())
    config = json.loads(route.calls[0].request.content)["generationConfig"]
    assert {k: config[k] for k in ("temperature", "topK", "topP", "maxOutputTokens")} == {
        "temperature": 0.7, "topK": 40, "topP": 0.95, "maxOutputTokens": 8192}


def youtube_403(reason: str) -> httpx.Response:
    """The YouTube Data API's quota answer, as it sends it."""
    return httpx.Response(403, json={"error": {
        "code": 403, "message": f"The request cannot be completed because you have exceeded "
                                f"your quota. ({reason})",
        "errors": [{"message": "quota", "domain": "youtube.quota", "reason": reason}]}})


@pytest.mark.parametrize(("reason", "calls"), [("quotaExceeded", 1), ("rateLimitExceeded", 4)])
async def test_an_analysis_goes_on_without_metadata_when_youtubes_quota_is_out(
    api, edge, provider_env, sleeps, reason, calls
):
    """YouTube answering 403 quotaExceeded (not retried) or rateLimitExceeded (retried
    within the budget first): the analysis succeeds without metadata, and the metadata
    step's event says it was skipped."""
    await set_account(provider_env, "user-1", "pro", 10)
    youtube = edge.get(f"{YOUTUBE}/videos").mock(return_value=youtube_403(reason))
    edge.post(TEXT_URL).mock(return_value=text_answer(json.dumps(ANALYTICS)))
    done = await api.post("/v1/videos/analyses", json={"videoId": "dQw4w9WgXcQ"},
                          headers=auth())
    assert done.status_code == 200, done.text
    assert done.json()["operation"]["result"]["analytics"] == ANALYTICS
    assert youtube.call_count == calls
    (completed,) = [e for e in await log_of(api, done.json()["operation"]["id"])
                    if e.event == "step" and e.data["step"] == "metadata"
                    and e.data["status"] == "completed"]
    assert completed.data["output"]["metadata"].startswith("skipped")


@pytest.mark.parametrize(
    ("size", "ratio", "resolution"),
    [((720, 1280), "9:16", "1K"), ((1024, 1024), "1:1", "1K"), ((2560, 1440), "16:9", "2K"),
     ((3000, 1000), "21:9", "4K")],
)
async def test_a_heatmap_has_its_sources_aspect_ratio_and_size_class(
    api, edge, provider_env, size, ratio, resolution
):
    """The heatmap is asked for in the source's own aspect ratio and size class, so it
    overlays a 9:16 or 1:1 thumbnail 1:1 (not forced to 16:9 at 1K)."""
    await set_account(provider_env, "user-1", "advanced", 10)
    heat = edge.post(HEATMAP_URL).mock(return_value=image_answer(png(*size, "orange")))
    body = {"image_base64": base64.b64encode(png(*size, "teal")).decode(),
            "mime_type": "image/png"}
    done = await api.post("/v1/heatmaps", json=body, headers=auth())
    assert done.status_code == 200, done.text
    sent = json.loads(heat.calls[0].request.content)["generationConfig"]["imageConfig"]
    assert sent == {"aspectRatio": ratio, "imageSize": resolution}


def test_the_format_of_an_image_is_its_nearest_ratio_and_covering_size() -> None:
    """Nearest ratio by log distance, smallest size class covering the long side."""
    from service._spec import format_of

    assert format_of(1280, 720) == ("1K", "16:9")
    assert format_of(1080, 1920) == ("2K", "9:16")
    assert format_of(1000, 1010) == ("1K", "1:1")
    assert format_of(8000, 3000) == ("4K", "21:9")
    with pytest.raises(ValueError, match="positive"):
        format_of(0, 10)


async def test_gpt_image_2_generates_with_reference_images_through_edits(api, edge):
    """imageModel gpt-image-2 with reference images: OpenAI's edits endpoint (the one that
    takes images) gets model gpt-image-2 and the fetched references; Gemini is not asked."""
    reference = png(40, 40, "white")
    edge.get("http://93.184.216.34/face.png").mock(return_value=httpx.Response(
        200, content=reference, headers={"Content-Type": "image/png"}))
    gemini = edge.post(IMAGE_URL).mock(return_value=image_answer())
    edits = edge.post(f"{OPENAI}/v1/images/edits").mock(return_value=httpx.Response(
        200, json={"data": [{"b64_json": base64.b64encode(png(1536, 1024)).decode()}]}))
    done = await api.post("/v1/thumbnails", json={
        "title": "with a face", "imageModel": "gpt-image-2",
        "referenceImages": ["http://93.184.216.34/face.png"]}, headers=auth())
    assert done.status_code == 200, done.text
    assert gemini.call_count == 0
    sent = edits.calls[0].request
    body = sent.content
    assert b'name="model"\r\n\r\ngpt-image-2' in body
    assert reference in body
    assert b"1 attached reference image" in body


async def test_a_quota_delay_within_the_budget_is_waited_for(api, edge, sleeps):
    """A RetryInfo delay of 45 s, inside the call's budget (180 s): waited for and
    retried, not handed to the user."""
    route = edge.post(IMAGE_URL).mock(side_effect=[quota_429("45s"), image_answer()])
    done = await api.post("/v1/thumbnails", json={"title": "wait"}, headers=auth())
    assert done.status_code == 200, done.text
    assert route.call_count == 2
    assert sleeps.delays == [45.0]


async def test_variants_are_made_from_the_image_the_check_decoded(served, edge, monkeypatch):
    """Gemini's answer is decoded in full to check it; the variants are made from that
    decoding, without reading the stored original back or decoding it again."""
    app, api = served
    storage = app.state.services.storage
    read: list[str] = []
    real_get = storage.get

    async def get(key: str) -> tuple[bytes, str]:
        read.append(key)
        return await real_get(key)

    monkeypatch.setattr(storage, "get", get)
    edge.post(IMAGE_URL).mock(return_value=image_answer(png(320, 180, "purple")))
    done = await api.post("/v1/thumbnails", json={"title": "decoded once"}, headers=auth())
    assert done.status_code == 200, done.text
    (thumb,) = done.json()["operation"]["result"]["thumbnails"]
    assert read == []
    variant = Image.open(io.BytesIO((await api.get(thumb["image_400w_url"])).content))
    assert variant.size == (320, 180)  # never enlarged
    assert variant.convert("RGB").getpixel((160, 90)) == pytest.approx((128, 0, 128), abs=8)
