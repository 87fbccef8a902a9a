"""The service under test: in process (ASGI) for JSON paths, real uvicorn processes for
streams, restarts and several instances."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from starlette.applications import Starlette

from service import Settings, create_app
from service.web import Authenticator
from tests.conftest import ROOT, child_env
from tests.servers import free_port

SECRET = "test-secret-for-the-service-0123456789"
#: A loaded CI machine can take a while to start a process and migrate nothing.
READY_TIMEOUT_S = 60.0
#: In process, the lifespan's start and stop (runs get SHUTDOWN_GRACE_S to checkpoint,
#: engines close) are waited for this long: their end, not a guess of their time.
LIFESPAN_TIMEOUT_S = 60.0


def in_process(app: Starlette) -> LifespanManager:
    """The app's lifespan, run in this process."""
    return LifespanManager(app, startup_timeout=LIFESPAN_TIMEOUT_S,
                           shutdown_timeout=LIFESPAN_TIMEOUT_S)


def token(user_id: str, ttl_s: int = 3600) -> str:
    return Authenticator(SECRET).issue_user_token(user_id, ttl_s=ttl_s)


def auth(user_id: str = "user-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(user_id)}"}


@pytest.fixture
def service_env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """Settings of one service deployment (each backend in turn, in-process limiter)."""
    return {
        "DATABASE_URL": db_url,
        "DATA_DIR": str(tmp_path / "data"),
        "AUTH_JWT_SECRET": SECRET,
        "LEASE_TTL_S": "2",
        "SYNC_WAIT_S": "30",
        "SHUTDOWN_GRACE_S": "5",
    }


@pytest.fixture
def app(service_env: dict[str, str]) -> Starlette:
    """The app of the deployment (its state exists while `client` runs its lifespan)."""
    return create_app(Settings.from_env(service_env))


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, with its lifespan."""
    async with in_process(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@dataclass
class ServiceProcess:
    """`python -m service serve` in a child process."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(self.port)],
                cwd=ROOT, env={**child_env(), **self.env}, stdout=log, stderr=log,
            )
        self.wait_until_ready()

    def wait_until_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz until it answers 200; fail with what was not ready (the process
        gone, nothing listening, or the checks /readyz reported) and the log's tail."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        last = "nothing listened on the port"
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"the service exited with code {self.process.returncode} before it "
                        f"was ready:\n{self.log()[-3000:]}"
                    )
                try:
                    answer = client.get("/readyz")
                except httpx.TransportError as exc:
                    last = f"nothing answered ({type(exc).__name__})"
                else:
                    if answer.status_code == 200:
                        return
                    last = f"/readyz answered {answer.status_code}: {answer.text[:300]}"
                time.sleep(0.05)
        raise AssertionError(
            f"the service on port {self.port} was not ready after {timeout} s; {last}\n"
            f"{self.log()[-3000:]}"
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start service processes with given settings; all are killed at the end."""
    started: list[ServiceProcess] = []

    def start(env: dict[str, str], name: str = "a") -> ServiceProcess:
        proc = ServiceProcess(dict(env), log_path=tmp_path / f"service-{name}.log")
        proc.start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


async def wait_for_step(
    client: httpx.AsyncClient, base: str, op_id: str, key: str, status: str
) -> dict:
    """Poll the snapshot until step `key` has `status`."""
    for _ in range(100):  # within the `operations` limit of 120 requests a minute
        snapshot = (await client.get(f"{base}/v1/operations/{op_id}", headers=auth())).json()
        if any(s["key"] == key and s["status"] == status for s in snapshot["steps"]):
            return snapshot
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never became {status}")
