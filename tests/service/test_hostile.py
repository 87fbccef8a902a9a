"""Hostile input costs nothing: bounded memory, a free event loop, exact refusals."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import statistics
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from service.web._negotiation import wants_async, wants_stream
from tests.service.conftest import auth
from tests.service.sse import events
from tests.service.test_streams import set_account

pytestmark = pytest.mark.anyio


def png_base64(width: int, height: int, mode: str = "RGB") -> str:
    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def peak_memory_bytes(pid: int) -> int:
    """The process's peak resident set (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


async def test_an_8000_square_heatmap_upload_costs_no_memory(spawn, service_env):
    """An all-black 8000 × 8000 PNG (a small file, 64 MP) is refused from its header with
    400: the serving process's peak memory stays far under 1 GB."""
    await set_account(service_env, "user-1", "advanced", 10)
    server = spawn(service_env)
    body = {"image_base64": png_base64(8000, 8000), "mime_type": "image/png"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        refused = await client.post("/v1/heatmaps", json=body, headers=auth())
    assert refused.status_code == 400
    assert "8000 × 8000 pixels" in refused.json()["error"]
    assert server.process is not None
    assert peak_memory_bytes(server.process.pid) < 1024**3


async def test_large_decodes_do_not_stall_other_requests(spawn, service_env):
    """4 uploads of a 6000 × 6000 PNG (under the caps: decoded in full, after the rate
    limit, in worker threads) in flight: /healthz stays about as quick as when idle
    (a loose ratio to its idle latency in the same run)."""
    await set_account(service_env, "user-1", "advanced", 10)
    server = spawn(service_env)
    body = {"image_base64": png_base64(6000, 6000), "mime_type": "image/png"}

    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        async def health() -> float:
            started = time.perf_counter()
            assert (await client.get("/healthz")).status_code == 200
            return time.perf_counter() - started

        idle = statistics.median([await health() for _ in range(20)])
        uploads = [asyncio.create_task(client.post("/v1/heatmaps", json=body,
                                                   headers=auth()))
                   for _ in range(4)]
        busy = []
        while not all(u.done() for u in uploads):
            busy.append(await health())
        answers = [u.result() for u in uploads]
    # Two heatmap slots per user: two decode and run, the others are refused at once.
    assert sorted(a.status_code for a in answers)[:2] == [200, 200]
    assert {a.status_code for a in answers} <= {200, 429}
    assert busy
    assert statistics.median(busy) < max(20 * idle, 0.1)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/thumbnails", {"title": "a\u0000b"}),
        ("POST", "/v1/thumbnails", {"title": "t", "palette": ["red\u0000"]}),
        ("GET", "/v1/operations/ab%00cd", None),
        ("POST", "/v1/thumbnails/ab%00cd/edits", {"prompt": "x"}),
    ],
)
async def test_a_nul_character_is_a_400_not_an_outage(client, method, path, body):
    """A NUL in a body string or a path id: 400 VALIDATION_ERROR, not retryable (on
    PostgreSQL it would otherwise reach a query as a 'retryable outage')."""
    answer = await client.request(method, path, json=body, headers=auth())
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR"
    assert answer.json()["retryable"] is False


async def test_open_streams_per_user_are_capped(spawn, service_env, tmp_path):
    """With 2 streams per user, a third is 429 (whichever endpoint opens it); another
    user is not affected (and cannot follow the run); a closed stream frees its place."""
    limits = tmp_path / "limits.toml"
    limits.write_text("[routes.streams]\nconcurrency = 2\n")
    server = spawn({**service_env, "RATE_LIMITS": str(limits),
                    "LOCAL_PROVIDER_DELAY_MS": "3000"})
    sse = {"Accept": "text/event-stream"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        key = {"Idempotency-Key": "slow-one"}
        accepted = await client.post("/v1/thumbnails", json={"title": "slow"},
                                     headers={**auth(), **key, "Prefer": "respond-async"})
        events_url = accepted.json()["links"]["self"] + "/events"
        async with client.stream("GET", events_url, headers=auth()) as first, \
                client.stream("GET", events_url, headers=auth()) as second:
            assert (first.status_code, second.status_code) == (200, 200)
            third = await client.get(events_url, headers=auth())
            assert third.status_code == 429
            assert third.json()["code"] == "RATE_LIMIT_EXCEEDED"
            replay = await client.post("/v1/thumbnails", json={"title": "slow"},
                                       headers={**auth(), **key, **sse})
            assert replay.status_code == 429
            fresh = await client.post("/v1/thumbnails", json={"title": "new"},
                                      headers={**auth(), **sse})
            assert fresh.status_code == 429
            assert fresh.headers["RateLimit-Policy"].startswith('"generate"')
            waiting = await client.post("/v1/thumbnails", json={"title": "json"},
                                        headers=auth())
            assert waiting.status_code == 429  # a JSON answer waits: it counts too
            for _ in range(3):
                head = await client.head(events_url, headers=auth())
                assert head.status_code == 429
            other = await client.get("/v1/account", headers=auth("user-2"))
            assert other.status_code == 200
            # The run is in this instance's hands (no database read to follow it): still
            # nobody else's to follow.
            intruder = await client.get(events_url, headers=auth("user-2"))
            assert intruder.status_code == 404
        # Once the server has seen both streams close (a new connection may well be
        # answered before that), their places are free.
        for _ in range(200):
            if "viewbait_open_event_streams 0.0" in (await client.get("/metrics")).text:
                break
            await asyncio.sleep(0.01)
        async with client.stream("GET", events_url, headers=auth()) as again:
            assert again.status_code == 200
            assert [e.event async for e in events(again)][-1] == "result"
        # One generation charged: the refused fresh stream created nothing.
        account = await client.get("/v1/account", headers=auth())
        assert account.json()["credits_remaining"] == 9


async def test_concurrent_first_requests_with_one_key_all_get_the_operation(
    spawn, service_env, tmp_path
):
    """20 simultaneous first requests with one Idempotency-Key: one operation, one
    charge, and every answer is that operation (none is 429)."""
    server = spawn({**service_env, "LOCAL_PROVIDER_DELAY_MS": "500"})
    headers = {**auth(), "Idempotency-Key": "twenty-at-once", "Prefer": "respond-async"}
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        answers = await asyncio.gather(*(
            client.post("/v1/thumbnails", json={"title": "same"}, headers=headers)
            for _ in range(20)))
        assert [a.status_code for a in answers] == [202] * 20, [a.text for a in answers]
        assert len({a.json()["operation_id"] for a in answers}) == 1
        done = await client.get(answers[0].json()["links"]["self"], headers=auth())
        for _ in range(100):
            if done.json()["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
            done = await client.get(answers[0].json()["links"]["self"], headers=auth())
        account = (await client.get("/v1/account", headers=auth())).json()
    assert account["credits_remaining"] == 9


async def test_the_studio_page_and_files_carry_security_headers(client):
    """`/`: a CSP with no inline script or style and no framing, nosniff, no referrer;
    every other answer: nosniff and no referrer."""
    page = await client.get("/")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "style=" not in page.text
    for path in ("/static/app.js", "/healthz", "/v1/account"):
        answer = await client.get(path, headers=auth())
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "Content-Security-Policy" not in answer.headers


async def test_a_client_hanging_up_mid_body_is_not_an_error(spawn, service_env):
    """A body cut short by the client: no 500, no traceback; one INFO line."""
    server = spawn({**service_env, "LOG_FORMAT": "json"})
    _reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /v1/thumbnails HTTP/1.1\r\nHost: x\r\n"
                 b"Authorization: " + auth()["Authorization"].encode() + b"\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"title\"")
    await writer.drain()
    await asyncio.sleep(0.5)
    writer.close()
    await writer.wait_closed()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/healthz")).status_code == 200
    await asyncio.sleep(0.5)
    log = server.log()
    assert "client disconnected" in log
    assert "Traceback" not in log
    assert "INTERNAL_ERROR" not in log
    assert '"level": "error"' not in log


class _Request:
    def __init__(self, **headers: str) -> None:
        self.headers = headers


@pytest.mark.parametrize(
    ("accept", "stream"),
    [
        ("text/event-stream", True),
        ("text/event-stream;q=0", False),
        ("application/json, text/event-stream;q=0.5", False),
        ("text/event-stream, application/json", True),
        ("text/event-stream;q=0.9, application/json;q=0.8", True),
        ("*/*", False),
        ("TEXT/EVENT-STREAM; charset=utf-8", True),
        ("text/event-stream;q=oops", False),
        ("", False),
    ],
)
def test_accept_is_read_with_its_q_values(accept, stream) -> None:
    """A stream only when text/event-stream is acceptable and not ranked below JSON."""
    assert wants_stream(_Request(accept=accept)) is stream  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefer", "wanted"),
    [("respond-async", True), ("respond-async; wait=5", True),
     ("return=minimal, respond-async", True), ("wait=5", False),
     ("respond-asynchronously", False), ("", False)],
)
def test_prefer_is_read_with_its_parameters(prefer, wanted) -> None:
    """respond-async with or without parameters, among other preferences."""
    assert wants_async(_Request(prefer=prefer)) is wanted  # type: ignore[arg-type]


async def test_events_carry_no_storage_keys(client, service_env):
    """No event of a generation or a heatmap upload shows object keys or digests."""
    await set_account(service_env, "user-1", "advanced", 10)
    made = await client.post("/v1/thumbnails", json={"title": "t"}, headers=auth())
    heat = await client.post("/v1/heatmaps", json={"image_base64": png_base64(64, 36),
                                                  "mime_type": "image/png"}, headers=auth())
    for done in (made, heat):
        op_id = done.json()["operation"]["id"]
        async with client.stream("GET", f"/v1/operations/{op_id}/events",
                                 headers=auth()) as stream:
            text = "".join([chunk async for chunk in stream.aiter_text()])
        assert "_key" not in text
        assert "uploads/" not in text
        assert "thumbnails/" not in text.replace(
            "/v1/files/thumbnails/", "")
        assert "sha256" not in text


async def _read_until_closed(reader: asyncio.StreamReader, within: float) -> bytes:
    async with asyncio.timeout(within):
        return await reader.read()


async def test_a_client_sending_headers_slowly_is_cut_off(spawn, service_env):
    """Headers trickling in one byte a second: 408 and the connection closed once the
    header deadline has passed (a slowloris holds nothing for long)."""
    from service._serving import HEADER_TIMEOUT_S

    server = spawn(service_env)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for _ in range(int(HEADER_TIMEOUT_S * 3)):
            await asyncio.sleep(1)
            if writer.is_closing():
                return
            writer.write(b"X")
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    dripping = asyncio.create_task(trickle())
    try:
        answer = await _read_until_closed(reader, HEADER_TIMEOUT_S * 2)
    finally:
        dripping.cancel()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408")


async def test_oversized_headers_are_refused(spawn, service_env):
    """540 KB of headers: 431 and the connection closed, not read into memory."""
    server = spawn(service_env)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    with contextlib.suppress(ConnectionError):
        for i in range(540):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"a" * 1000))
            await writer.drain()
    try:
        answer = await _read_until_closed(reader, 30)
    except ConnectionResetError:
        answer = b"reset"  # closed with our headers unread: the 431 may be lost with them
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431") or answer == b"reset", answer[:100]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_body_that_does_not_arrive_in_time_is_refused(app, client):
    """A body that stops coming: 400 once its deadline has passed (here 0.2 s), and the
    handler never sees it."""
    from service.web import BodyLimit

    guarded = BodyLimit(app, max_bytes=1 << 20, body_timeout_s=0.2)
    scope = {"type": "http", "method": "POST", "path": "/v1/thumbnails", "raw_path":
             b"/v1/thumbnails", "query_string": b"", "headers": [
                 (b"authorization", auth()["Authorization"].encode()),
                 (b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("test", 80),
             "client": ("127.0.0.1", 1), "root_path": "", "app": app}
    chunks = [{"type": "http.request", "body": b'{"title"', "more_body": True}]

    async def receive():
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    sent = []

    async def send(message):
        sent.append(message)

    await guarded(scope, receive, send)
    assert sent[0]["status"] == 400
    assert b"did not arrive within 0.2 s" in sent[1]["body"]


async def test_a_head_of_an_events_url_holds_no_stream(spawn, service_env, tmp_path):
    """HEAD of an events URL answers without streaming and frees its stream slot: more
    HEADs than the cap leave the user's streams free."""
    limits = tmp_path / "limits.toml"
    limits.write_text("[routes.streams]\nconcurrency = 2\n")
    server = spawn({**service_env, "RATE_LIMITS": str(limits)})
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        accepted = await client.post("/v1/thumbnails", json={"title": "t"},
                                     headers={**auth(), "Prefer": "respond-async"})
        events_url = accepted.json()["links"]["self"] + "/events"
        for _ in range(5):
            assert (await client.head(events_url, headers=auth())).status_code == 200
        async with client.stream("GET", events_url, headers=auth()) as stream:
            assert stream.status_code == 200


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/thumbnails", {"title": "t", "reference_images": ["http://example.com:99999/a.png"]}),
        ("/v1/thumbnails", {"title": "t", "reference_images": ["http://example.com:abc/a.png"]}),
        ("/v1/thumbnails", {"title": "t", "reference_images": ["http://[::1/a.png"]}),
        ("/v1/videos/analyses", {"video": "http://[abcdefgh"}),
    ],
)
async def test_malformed_urls_are_a_400(client, path, body):
    """Bad ports and broken IPv6 brackets in image or video URLs: 400, not a 500."""
    answer = await client.post(path, json=body, headers=auth())
    assert answer.status_code == 400, answer.text
    assert answer.json()["code"] == "VALIDATION_ERROR"
