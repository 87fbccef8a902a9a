"""The studio page in Debian's Chromium, driven by Playwright's sync API.

The service runs in its own process (the `spawn` fixture of the service tests), so the
browser tests are plain sync tests: no event loop is shared with Playwright's.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import ROOT, child_env
from tests.service.conftest import spawn  # noqa: F401  (a fixture of these tests too)

# Slower CI machines: wait up to 20 s for what the page should show (default 5 s).
expect.set_options(timeout=20_000)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(studio_env: dict[str, str]) -> Iterator[Page]:
    """A fresh Chromium page.

    Playwright's sync API runs an event loop of its own while it is open, and fixtures
    such as `sqlite_url` call `asyncio.run`: so the browser starts per test, after the
    deployment's fixtures (hence the dependency on `studio_env`), and stops with the test.
    """
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium "
            "(apt-get install chromium; .ci/run installs it)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(20_000)
            yield context.new_page()
        finally:
            browser.close()


@pytest.fixture
def studio_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    """A dev-mode deployment (no AUTH_JWT_SECRET: the page fetches a demo token)."""
    return {
        "DATABASE_URL": sqlite_url,
        "DATA_DIR": str(tmp_path / "data"),
        "LEASE_TTL_S": "2",
        "SHUTDOWN_GRACE_S": "5",
    }


def set_account(env: dict[str, str], user_id: str, tier: str, credits: int) -> None:
    """`python -m service accounts set` against the deployment's database."""
    subprocess.run(
        [sys.executable, "-m", "service", "accounts", "set", user_id,
         "--tier", tier, "--credits", str(credits)],
        cwd=ROOT, env={**child_env(), **env}, check=True, capture_output=True, timeout=60,
    )


@pytest.fixture
def page_origin() -> Iterator[Callable[[], str]]:
    """Serve the studio's files from other origins (other ports), as a page of ViewBait's
    own site would call the service: each call starts one and returns its origin."""
    servers: list[ThreadingHTTPServer] = []

    def start() -> str:
        handler = functools.partial(_QuietFiles, directory=str(ROOT / "service"))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
