"""ViewBait's request bodies, as its client sends them (camelCase, nulls, its model
names), are accepted by the same models as ours; what they cannot mean is refused with
a 4xx before anything is written."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from tests.service.conftest import auth
from tests.service.test_streams import set_account

pytestmark = pytest.mark.anyio

# ViewBait's studio body for `POST /api/generate`, field for field.
VIEWBAIT_GENERATE = {
    "title": "I Tried Every Budget Camera",
    "thumbnailText": "$50 VS $5000",
    "emotion": "surprised",
    "pose": None,
    "style": "bold-youtube",
    "palette": "vibrant",
    "resolution": "1K",
    "aspectRatio": "16:9",
    "referenceImages": [],
    "faceCharacters": [],
    "customStyle": None,
    "variations": 1,
    "imageModel": "nano-banana-2",
    "project_id": None,
}


async def credits(client, user: str = "user-1") -> int:
    return (await client.get("/v1/account", headers=auth(user))).json()["credits_remaining"]


async def test_viewbaits_generate_body_is_accepted_as_it_is(client):
    """The camelCase body with nulls, a palette name and a model choice generates a
    thumbnail (the offline provider stands in for the chosen model)."""
    done = await client.post("/v1/thumbnails", json=VIEWBAIT_GENERATE, headers=auth())
    assert done.status_code == 200, done.text
    operation = done.json()["operation"]
    assert operation["status"] == "succeeded"
    assert len(operation["result"]["thumbnails"]) == 1
    assert operation["result"]["credits_used"] == 1


async def test_camel_and_snake_case_bodies_are_the_same_request(client):
    """One model per body: ViewBait's names and ours under one Idempotency-Key are the
    same operation, not a reused key."""
    ours = {"title": VIEWBAIT_GENERATE["title"], "thumbnail_text": "$50 VS $5000",
            "emotion": "surprised", "style": "bold-youtube", "palette": "vibrant",
            "aspect_ratio": "16:9", "reference_images": [], "model": "nano-banana-2"}
    key = {"Idempotency-Key": "same-request"}
    first = await client.post("/v1/thumbnails", json=VIEWBAIT_GENERATE,
                              headers={**auth(), **key})
    again = await client.post("/v1/thumbnails", json=ours, headers={**auth(), **key})
    assert first.status_code == again.status_code == 200
    assert first.json()["operation"]["id"] == again.json()["operation"]["id"]
    assert await credits(client) == 9


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"imageModel": "dall-e-3"}, 400, "VALIDATION_ERROR"),
        ({"aspectRatio": "7:3"}, 400, "VALIDATION_ERROR"),
        ({"faceCharacters": [{"images": []}]}, 400, "VALIDATION_ERROR"),
        ({"referenceImages": ["https://example.com/a.png"] * 5,
          "faceImages": ["https://example.com/b.png"] * 4}, 400, "VALIDATION_ERROR"),
        ({"thumbnailText": "a", "thumbnail_text": "b"}, 400, "VALIDATION_ERROR"),
    ],
)
async def test_what_a_viewbait_body_cannot_mean_is_refused_before_anything(
    client, change, status, code
):
    """An unknown model, ratio or empty face group, more than 8 references and faces in
    all, or one field under both names: 4xx, no operation, no credit spent."""
    body = {**VIEWBAIT_GENERATE, **change}
    refused = await client.post("/v1/thumbnails", json=body, headers=auth())
    assert refused.status_code == status, refused.text
    assert refused.json()["code"] == code
    assert await credits(client) == 10


async def test_a_model_whose_provider_is_not_set_up_is_refused_at_once(
    service_env, tmp_path
):
    """gpt-image-2 when only Gemini is configured: 503 PROVIDER_NOT_CONFIGURED before
    anything is charged, not a failure inside the run."""
    import httpx

    from service import Settings, create_app
    from tests.service.conftest import in_process

    env = {**service_env, "IMAGE_PROVIDERS": "gemini", "GEMINI_API_KEY": "g-key"}
    app = create_app(Settings.from_env(env), transport=httpx.MockTransport(_no_network))
    async with in_process(app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
    ) as client:
        refused = await client.post("/v1/thumbnails",
                                    json={**VIEWBAIT_GENERATE, "imageModel": "gpt-image-2"},
                                    headers=auth())
        assert refused.status_code == 503
        assert refused.json()["code"] == "PROVIDER_NOT_CONFIGURED"
        assert await credits(client) == 10


def _no_network(request):
    raise AssertionError(f"no request was expected, got {request.url}")


async def test_viewbaits_edit_body_is_accepted(client):
    """`{thumbnailId, editPrompt, imageModel, title}` edits the thumbnail it names (the
    path's); another id in the body is refused."""
    source = (await client.post("/v1/thumbnails", json={"title": "source"},
                                headers=auth())).json()["operation"]["result"]["thumbnails"][0]
    body = {"thumbnailId": source["id"], "editPrompt": "make it pop", "imageModel": None,
            "referenceImages": [], "title": "edited title"}
    done = await client.post(f"/v1/thumbnails/{source['id']}/edits", json=body,
                             headers=auth())
    assert done.status_code == 200, done.text
    assert done.json()["operation"]["result"]["source_thumbnail_id"] == source["id"]
    other = {**body, "thumbnailId": "00000000-0000-0000-0000-000000000000"}
    refused = await client.post(f"/v1/thumbnails/{source['id']}/edits", json=other,
                                headers=auth())
    assert refused.status_code == 400


def _png_base64() -> str:
    out = io.BytesIO()
    Image.new("RGB", (160, 90), "orange").save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_viewbaits_heatmap_body_with_image_and_its_thumbnail_id(client, service_env):
    """`{imageData, mimeType, thumbnailId}`: the inline image is mapped, the id only
    checked for ownership — someone else's id is 404."""
    await set_account(service_env, "user-1", "advanced", 10)
    source = (await client.post("/v1/thumbnails", json={"title": "mine"},
                                headers=auth())).json()["operation"]["result"]["thumbnails"][0]
    body = {"imageData": _png_base64(), "mimeType": "image/png", "thumbnailId": source["id"]}
    done = await client.post("/v1/heatmaps", json=body, headers=auth())
    assert done.status_code == 200, done.text
    assert done.json()["operation"]["result"]["mime_type"] == "image/png"
    await set_account(service_env, "user-2", "advanced", 10)
    stolen = await client.post("/v1/heatmaps", json=body, headers=auth("user-2"))
    assert stolen.status_code == 404


async def test_viewbaits_video_body_names_the_video(client):
    """`{videoId}` is read as our `video` (the free tier then gets its 403)."""
    answer = await client.post("/v1/videos/analyses", content=json.dumps(
        {"videoId": "dQw4w9WgXcQ"}), headers={**auth(), "Content-Type": "application/json"})
    assert answer.status_code == 403
    assert answer.json()["code"] == "TIER_LIMIT"
