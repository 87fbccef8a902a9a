"""thumbnail.generate through the API, in process (JSON answers)."""

from __future__ import annotations

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
