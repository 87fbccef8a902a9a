"""The outside world's edges on their own: Supabase Storage and the image fetcher."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator

import httpx
import pytest
import respx
from PIL import Image

from service._errors import FetchRefused, NotFound, ProviderError, StorageUnavailable
from service._storage import SIGNED_URL_TTL_S, SupabaseStorage
from service.providers import ImageFetcher

pytestmark = pytest.mark.anyio

SUPABASE = "https://project.supabase.test"


def png_bytes(width: int, height: int, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return out.getvalue()


TINY_PNG = png_bytes(4, 4)


@contextlib.asynccontextmanager
async def edge_client(
    *, assert_all_called: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, respx.MockRouter]]:
    """An HTTP client whose transport is a respx router (nothing patched globally); at
    the end, every route was called unless told otherwise."""
    edge = respx.MockRouter(assert_all_called=assert_all_called)
    async with httpx.AsyncClient(transport=httpx.MockTransport(edge.async_handler)) as http:
        yield http, edge
    if assert_all_called:
        edge.assert_all_called()


async def test_supabase_storage_upserts_reads_and_signs():
    """The key's first segment is the bucket; uploads upsert; links are signed URLs."""
    async with edge_client() as (http, edge):
        upload = edge.post(f"{SUPABASE}/storage/v1/object/thumbnails/u1/t1/thumbnail.png")
        upload.mock(return_value=httpx.Response(200, json={"Key": "x"}))
        edge.get(f"{SUPABASE}/storage/v1/object/thumbnails/u1/t1/thumbnail.png").mock(
            return_value=httpx.Response(200, content=b"png!",
                                        headers={"Content-Type": "image/png"}))
        sign = edge.post(f"{SUPABASE}/storage/v1/object/sign/thumbnails/u1/t1/thumbnail.png")
        sign.mock(return_value=httpx.Response(200, json={
            "signedURL": "/object/sign/thumbnails/u1/t1/thumbnail.png?token=abc"}))
        storage = SupabaseStorage(http, SUPABASE, "service-key")

        await storage.put("thumbnails/u1/t1/thumbnail.png", b"png!", "image/png")
        sent = upload.calls[0].request
        assert sent.headers["x-upsert"] == "true"
        assert sent.headers["authorization"] == "Bearer service-key"
        assert sent.headers["content-type"] == "image/png"
        assert await storage.get("thumbnails/u1/t1/thumbnail.png") == (b"png!", "image/png")
        url = await storage.signed_url("thumbnails/u1/t1/thumbnail.png", base_url=None)
        assert url == (f"{SUPABASE}/storage/v1/object/sign/thumbnails/u1/t1/thumbnail.png"
                       "?token=abc")
        assert sign.calls[0].request.content == f'{{"expiresIn":{SIGNED_URL_TTL_S}}}'.encode()


async def test_supabase_storage_deletes_a_buckets_objects_in_one_request():
    """Objects are removed by their paths within each bucket (DELETE with `prefixes`)."""
    import json

    async with edge_client() as (http, edge):
        remove = edge.delete(f"{SUPABASE}/storage/v1/object/thumbnails")
        remove.mock(return_value=httpx.Response(200, json=[]))
        storage = SupabaseStorage(http, SUPABASE, "service-key")
        await storage.delete(["thumbnails/u1/t1/thumbnail.png",
                              "thumbnails/u1/t1/thumbnail-400w.jpg"])
        sent = remove.calls[0].request
        assert json.loads(sent.content) == {
            "prefixes": ["u1/t1/thumbnail.png", "u1/t1/thumbnail-400w.jpg"]}
        assert len(remove.calls) == 1


async def test_supabase_storage_failures_are_clear():
    """Missing objects are NOT_FOUND; an unreachable or refusing store is retryable 503."""
    async with edge_client() as (http, edge):
        edge.get(f"{SUPABASE}/storage/v1/object/thumbnails/none").mock(
            return_value=httpx.Response(404, json={"error": "not found"}))
        edge.post(f"{SUPABASE}/storage/v1/object/thumbnails/x").mock(
            side_effect=httpx.ConnectError("refused"))
        storage = SupabaseStorage(http, SUPABASE, "k")
        with pytest.raises(NotFound):
            await storage.get("thumbnails/none")
        with pytest.raises(StorageUnavailable):
            await storage.put("thumbnails/x", b"", "image/png")
        with pytest.raises(NotFound):
            await storage.get("../etc/passwd")


async def fetcher_for(http: httpx.AsyncClient, **names: list[str]) -> ImageFetcher:
    async def resolve(host: str, _port: int) -> list[str]:
        return names[host.replace(".", "_")]

    return ImageFetcher(http, resolver=resolve, max_bytes=1000)


async def test_the_fetcher_connects_to_the_address_it_checked():
    """A public name is fetched from its resolved address, with the Host header kept."""
    async with edge_client() as (http, edge):
        route = edge.get("http://93.184.216.34/a.png").mock(return_value=httpx.Response(
            200, content=TINY_PNG, headers={"Content-Type": "image/png"}))
        fetcher = await fetcher_for(http, images_example_com=["93.184.216.34"])
        image = await fetcher.fetch("http://images.example.com/a.png")
        assert (image.data, image.mime_type) == (TINY_PNG, "image/png")
        assert route.calls[0].request.headers["host"] == "images.example.com"


@pytest.mark.parametrize(
    ("url", "answer"),
    [
        ("http://rebind_example_com/a.png", None),  # resolves to loopback
        ("http://93.184.216.34/redirect", httpx.Response(
            302, headers={"Location": "http://169.254.169.254/latest/meta-data"})),
        ("http://93.184.216.34/big", httpx.Response(
            200, content=b"x" * 2000, headers={"Content-Type": "image/png"})),
        ("http://93.184.216.34/page", httpx.Response(
            200, content=b"<html>", headers={"Content-Type": "text/html"})),
        ("http://93.184.216.34/missing", httpx.Response(404)),
        ("ftp://93.184.216.34/a.png", None),
    ],
    ids=["private-name", "redirect-to-metadata", "too-big", "not-an-image", "404", "ftp"],
)
async def test_the_fetcher_refuses_what_it_must_not_fetch(url, answer):
    """Private targets (also behind a redirect), oversize bodies, non-images, errors."""
    async with edge_client(assert_all_called=False) as (http, edge):
        if answer is not None:
            edge.get(url).mock(return_value=answer)
        fetcher = await fetcher_for(http, rebind_example_com=["127.0.0.1"])
        with pytest.raises(FetchRefused) as info:
            await fetcher.fetch(url.replace("_", "."))
        assert info.value.retryable is False


async def test_an_unreachable_image_host_is_a_retryable_provider_failure():
    """Connection errors while fetching are worth a retry."""
    async with edge_client() as (http, edge):
        edge.get("http://93.184.216.34/a.png").mock(side_effect=httpx.ConnectError("down"))
        fetcher = await fetcher_for(http)
        with pytest.raises(ProviderError) as info:
            await fetcher.fetch("http://93.184.216.34/a.png")
        assert info.value.retryable is True
        assert info.value.code == "PROVIDER_UNAVAILABLE"


async def test_the_fetcher_refuses_images_with_more_pixels_than_any_thumbnail():
    """A small file that declares 9000 × 9000 pixels is refused from its header, before
    anything decodes it."""
    bomb = png_bytes(9000, 9000, mode="1")
    assert len(bomb) < 50_000
    async with edge_client() as (http, edge):
        edge.get("http://93.184.216.34/bomb.png").mock(return_value=httpx.Response(
            200, content=bomb, headers={"Content-Type": "image/png"}))
        fetcher = ImageFetcher(http)
        with pytest.raises(FetchRefused, match="9000 × 9000 pixels"):
            await fetcher.fetch("http://93.184.216.34/bomb.png")
