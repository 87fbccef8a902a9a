"""The studio page at `/` in a real Chromium against a real service process."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.browser.conftest import set_account
from tests.service.conftest import SECRET, token

ALL_LOADED = """() => {
  const imgs = [...document.querySelectorAll('#thumbnails img')];
  return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""
ROWS = "rows => rows.map(r => [r.dataset.step, r.dataset.status])"


def planned(variations: int) -> list[str]:
    steps = ["reserve"]
    for i in range(1, variations + 1):
        steps += [f"v{i}/render", f"v{i}/variants", f"v{i}/record"]
    return [*steps, "settle"]


def open_studio(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def generate(page: Page, variations: int = 1) -> None:
    page.fill("#variations", str(variations))
    page.click("#generate")


def slow_generation_running(
    spawn, studio_env: dict[str, str], page: Page, variations: int, delay_ms: int
):
    """A service whose renders take `delay_ms`, and a generation of it on the page whose
    first render has started; returns the service."""
    env = {**studio_env, "LOCAL_PROVIDER_DELAY_MS": str(delay_ms)}
    set_account(env, "demo-user", "advanced", 50)
    server = spawn(env)
    open_studio(page, server.url)
    generate(page, variations=variations)
    expect(page.locator('#timeline li[data-step="v1/render"]')).to_have_attribute(
        "data-status", "started"
    )
    return server


def test_a_generation_shows_every_step_and_its_images(spawn, studio_env, page):
    """Dev mode: the page gets a demo token by itself; a 2-variation generation ends with
    every planned step completed once, a full progress bar, two loaded 400w images (full
    size on click) and the balance after the charge."""
    set_account(studio_env, "demo-user", "advanced", 20)
    server = spawn(studio_env)
    open_studio(page, server.url)
    expect(page.locator("#account-tier")).to_have_text("advanced")
    expect(page.locator("#account-credits")).to_have_text("20")

    generate(page, variations=2)
    expect(page.locator("#op-status")).to_have_text("succeeded")
    rows = page.locator("#timeline li").evaluate_all(ROWS)
    assert rows == [[key, "completed"] for key in planned(2)]
    expect(page.locator("#progress-bar")).to_have_attribute("data-value", "100")
    expect(page.locator("#conn")).to_have_attribute("data-state", "closed")
    expect(page.locator("#thumbnails img")).to_have_count(2)
    page.wait_for_function(ALL_LOADED)
    widths = page.locator("#thumbnails img").evaluate_all("i => i.map(x => x.naturalWidth)")
    assert widths == [400, 400]
    expect(page.locator("#account-credits")).to_have_text("18")

    page.locator("#thumbnails img").first.click()
    expect(page.locator("#lightbox-img")).to_be_visible()
    page.wait_for_function(
        "() => document.getElementById('lightbox-img').naturalWidth === 1280"
    )


def test_a_stream_cut_by_a_server_restart_resumes_without_duplicate_rows(
    spawn, studio_env, page
):
    """kill -9 the service while the first render is running; restarted on the same port
    with the same database, the page reconnects with Last-Event-ID, says so, and ends with
    each step shown once and all three images."""
    server = slow_generation_running(spawn, studio_env, page, variations=3, delay_ms=1500)
    server.kill()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-log")).to_contain_text("stream dropped after event")
    assert page.locator("#op-status").text_content() == "running"

    server.start()  # same port, settings and database: takes the run over
    expect(page.locator("#op-status")).to_have_text("succeeded", timeout=60_000)
    rows = page.locator("#timeline li").evaluate_all(ROWS)
    assert rows == [[key, "completed"] for key in planned(3)]
    expect(page.locator("#conn-log")).to_contain_text(
        re.compile(r"reconnected; resuming after event \d+")
    )
    expect(page.locator("#thumbnails img")).to_have_count(3)
    page.wait_for_function(ALL_LOADED)
    expect(page.locator("#account-credits")).to_have_text("47")


def test_a_reload_mid_run_follows_on_from_the_last_event_seen(spawn, studio_env, page):
    """Reloading the page while a run is going: the page shows the operation as it is
    now, asks for the events after the last one it had seen (`?last_event_id=`, since a
    new EventSource sends no Last-Event-ID), and ends with each step shown once."""
    slow_generation_running(spawn, studio_env, page, variations=2, delay_ms=3000)
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#conn-log")).to_contain_text(
        re.compile(r"page reloaded; resuming after event [1-9]\d*")
    )
    expect(page.locator("#op-status")).to_have_text("succeeded", timeout=60_000)
    rows = page.locator("#timeline li").evaluate_all(ROWS)
    assert rows == [[key, "completed"] for key in planned(2)]
    assert streams, "no events request after the reload"
    cursor = re.search(r"last_event_id=(\d+)", streams[0])
    assert cursor is not None, streams
    assert int(cursor.group(1)) > 0
    expect(page.locator("#thumbnails img")).to_have_count(2)
    expect(page.locator("#account-credits")).to_have_text("48")

    page.reload()  # a finished run: shown as it ended, with no stream to open
    expect(page.locator("#op-status")).to_have_text("succeeded")
    expect(page.locator("#conn-log")).to_contain_text(
        re.compile(r"operation succeeded; stream closed after event [1-9]\d*")
    )
    expect(page.locator("#thumbnails img")).to_have_count(2)


def test_a_rate_limited_generation_shows_a_countdown_from_retry_after(
    spawn, studio_env, page, tmp_path
):
    """With a limit of one generation an hour, the second answers 429: the page shows
    RATE_LIMIT_EXCEEDED and a countdown from Retry-After that ticks down, and the create
    buttons wait for it."""
    limits = tmp_path / "limits.toml"
    limits.write_text("[routes.generate]\nlimit = 1\nwindow_s = 3600\n")
    server = spawn({**studio_env, "RATE_LIMITS": str(limits)})
    open_studio(page, server.url)
    generate(page)
    expect(page.locator("#op-status")).to_have_text("succeeded")

    generate(page)
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice-code")).to_have_text("RATE_LIMIT_EXCEEDED")
    expect(page.locator("#notice-status")).to_have_text("HTTP 429")
    expect(page.locator("#countdown")).to_be_visible()
    first = int(page.locator("#countdown-seconds").text_content() or "0")
    assert 3000 < first <= 3600
    page.wait_for_function(
        f"() => +document.getElementById('countdown-seconds').textContent < {first}"
    )
    later = int(page.locator("#countdown-seconds").text_content() or "0")
    assert 0 < later < first
    expect(page.locator("#generate")).to_be_disabled()


def test_a_run_that_fails_shows_the_failed_step_and_the_error(spawn, studio_env, page):
    """The render step fails (the user's storage folder is a file, so the image cannot be
    stored): the timeline shows render failed and the rest of the variation pending, the
    notice shows the run's error (STORAGE_UNAVAILABLE, retryable, no server details) as
    the service reports it with a Resume button, and the reserved credit is refunded."""
    server = spawn(studio_env)
    blocker = Path(studio_env["DATA_DIR"]) / "objects" / "thumbnails" / "demo-user"
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a folder")
    open_studio(page, server.url)
    expect(page.locator("#account-credits")).to_have_text("10")
    generate(page)

    expect(page.locator("#op-status")).to_have_text("failed")
    rows = dict(page.locator("#timeline li").evaluate_all(ROWS))
    assert rows == {"reserve": "completed", "v1/render": "failed", "v1/variants": "pending",
                    "v1/record": "pending", "settle": "completed"}
    op_id = page.locator("#op-id").text_content()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        demo = client.post("/v1/dev/token").json()["token"]
        snapshot = client.get(
            f"/v1/operations/{op_id}", headers={"Authorization": f"Bearer {demo}"}
        ).json()
    assert snapshot["status"] == "failed"
    expect(page.locator("#notice")).to_be_visible()
    expect(page.locator("#notice-code")).to_have_text(snapshot["error"]["code"])
    expect(page.locator("#notice-message")).to_have_text(snapshot["error"]["message"])
    assert snapshot["error"]["code"] == "STORAGE_UNAVAILABLE"
    assert "objects" not in snapshot["error"]["message"]  # no server paths
    expect(page.locator("#notice-status")).to_have_text("retryable")
    expect(page.locator("#resume")).to_be_visible()
    expect(page.locator("#thumbnails img")).to_have_count(0)
    expect(page.locator("#account-credits")).to_have_text("10")


def test_with_a_real_secret_the_page_asks_for_a_token(spawn, studio_env, page):
    """AUTH_JWT_SECRET set: no dev token exists, the page asks for one; a pasted token
    shows that user's account."""
    server = spawn({**studio_env, "AUTH_JWT_SECRET": SECRET})
    dev_answers: list[int] = []
    page.on("response", lambda r: dev_answers.append(r.status)
            if r.url.endswith("/v1/dev/token") else None)
    page.goto(server.url)
    expect(page.locator("#auth-card")).to_be_visible()
    assert dev_answers == [404]
    page.fill("#token-input", token("pasted-user"))
    page.click("#token-form button")
    expect(page.locator("#account-user")).to_have_text("pasted-user")
    expect(page.locator("#account-tier")).to_have_text("free")
    expect(page.locator("#auth-card")).to_be_hidden()


class FailingGemini:
    """A stand-in for Gemini's HTTP edge on a local port: every call answers 503."""

    def __init__(self) -> None:
        import http.server
        import threading

        calls = self.calls = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                calls.append(self.path)
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = b'{"error": {"code": 503, "status": "UNAVAILABLE"}}'
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_failed_provider_shows_its_retries_and_the_error(spawn, studio_env, page):
    """Gemini (a local stand-in) answers 503 every time: after its retries (two `retry`
    events) the timeline shows the render failed; the notice shows PROVIDER_UNAVAILABLE,
    retryable, with a Resume button; the credit is refunded."""
    gemini = FailingGemini()
    try:
        server = spawn({**studio_env, "IMAGE_PROVIDERS": "gemini", "GEMINI_API_KEY": "test",
                        "GEMINI_BASE_URL": gemini.url, "PROVIDER_MAX_ATTEMPTS": "3"})
        open_studio(page, server.url)
        expect(page.locator("#account-credits")).to_have_text("10")
        generate(page)
        expect(page.locator("#op-status")).to_have_text("failed")
        expect(page.locator("#timeline li[data-step='v1/render']")).to_have_attribute(
            "data-status", "failed")
        expect(page.locator("#notice-code")).to_have_text("PROVIDER_UNAVAILABLE")
        expect(page.locator("#notice-message")).to_contain_text("Gemini is unavailable")
        expect(page.locator("#notice-status")).to_have_text("retryable")
        expect(page.locator("#resume")).to_be_visible()
        expect(page.locator("#account-credits")).to_have_text("10")
        assert len(gemini.calls) == 3
        assert all(path.endswith(":generateContent") for path in gemini.calls)
        op_id = page.locator("#op-id").text_content()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            demo = client.post("/v1/dev/token").json()["token"]
            log = client.get(f"/v1/operations/{op_id}/events",
                             headers={"Authorization": f"Bearer {demo}"}).text
        assert log.count("event: retry") == 2
    finally:
        gemini.close()


def test_heatmap_and_edit_buttons_work_on_a_result(spawn, studio_env, page):
    """On a generated thumbnail, Heatmap shows a loaded heatmap image and Edit (with the
    instruction typed in the prompt) adds an edited thumbnail; video analysis without
    Gemini shows PROVIDER_NOT_CONFIGURED."""
    set_account(studio_env, "demo-user", "pro", 20)
    server = spawn(studio_env)
    open_studio(page, server.url)
    generate(page)
    expect(page.locator("#op-status")).to_have_text("succeeded")

    page.locator("#thumbnails button", has_text="Heatmap").first.click()
    heatmap = page.locator("img.heatmap")
    expect(heatmap).to_have_count(1)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.heatmap');"
        " return i && i.complete && i.naturalWidth === 1280; }"
    )

    page.once("dialog", lambda dialog: dialog.accept("make it pop"))
    page.locator("#thumbnails button", has_text="Edit").first.click()
    expect(page.locator("#op-kind")).to_have_text("thumbnail.edit")
    expect(page.locator("#op-status")).to_have_text("succeeded")
    expect(page.locator("#thumbnails img")).to_have_count(2)
    page.wait_for_function(ALL_LOADED)
    expect(page.locator("#account-credits")).to_have_text("17")  # 1 + 2

    page.fill("#video", "dQw4w9WgXcQ")
    page.locator("button", has_text="Analyse").click()
    expect(page.locator("#notice-code")).to_have_text("PROVIDER_NOT_CONFIGURED")
