"""The one error model: what each kind of failure is answered with, and that nothing
unexpected is told to clients as a passing outage."""

from __future__ import annotations

import base64
import errno
import io
import logging

import httpx
import pytest
import sqlalchemy as sa
from PIL import Image
from starlette.requests import Request
from starlette.responses import Response

from service._errors import ErrorInfo, ProviderError, RunError, StorageUnavailable
from service.accounts import metadata
from service.web import describe
from tests.service.conftest import auth
from tests.service.test_streams import set_account

pytestmark = pytest.mark.anyio


def png_base64(colour: str = "teal") -> str:
    out = io.BytesIO()
    Image.new("RGB", (64, 36), colour).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


async def test_a_full_disk_while_storing_an_upload_is_a_storage_outage(
    client, service_env, tmp_path
):
    """An OSError of the object store (here: the uploads folder cannot be created) is
    503 STORAGE_UNAVAILABLE with Retry-After, never DATABASE_UNAVAILABLE; no operation
    is created and the rate-limit unit is given back."""
    await set_account(service_env, "user-1", "advanced", 10)
    objects = tmp_path / "data" / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    (objects / "uploads").write_text("a file where a folder should be")
    body = {"image_base64": png_base64(), "mime_type": "image/png"}
    refused = await client.post("/v1/heatmaps", json=body, headers=auth())
    assert refused.status_code == 503
    assert refused.json()["code"] == "STORAGE_UNAVAILABLE"
    assert refused.json()["retryable"] is True
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Policy"] == '"heatmap";q=10;w=60'
    (objects / "uploads").unlink()
    stored = await client.post("/v1/heatmaps", json=body, headers=auth())
    assert stored.status_code == 200
    # The refused request's unit came back: this one is the first charged.
    assert stored.headers["RateLimit"].startswith('"heatmap";r=9;')


async def test_a_storage_fault_inside_a_run_ends_it_retryably(client, tmp_path):
    """A generation whose image cannot be stored fails with STORAGE_UNAVAILABLE (503,
    retryable: `resume` continues it once the store is back)."""
    objects = tmp_path / "data" / "objects"
    objects.mkdir(parents=True, exist_ok=True)
    (objects / "thumbnails").write_text("a file where a folder should be")
    failed = await client.post("/v1/thumbnails", json={"title": "t"}, headers=auth())
    assert failed.status_code == 503
    assert failed.json()["code"] == "STORAGE_UNAVAILABLE"
    assert failed.json()["retryable"] is True
    (objects / "thumbnails").unlink()
    resumed = await client.post(failed.headers["Location"] + "/resume", headers=auth())
    assert resumed.status_code == 200
    assert resumed.json()["operation"]["status"] == "succeeded"


async def test_an_integrity_error_from_a_bug_is_an_internal_error(app, client, caplog):
    """A constraint violation reaching the edge is a bug, not an outage: 500
    INTERNAL_ERROR, not retryable, no details in the body, the traceback in the log."""

    async def duplicate_account(request: Request) -> Response:
        engine = request.app.state.services.engine
        accounts = metadata.tables["accounts"]
        row = {"user_id": "dup", "tier": "free", "credits_remaining": 1,
               "created_at": sa.func.now(), "updated_at": sa.func.now()}
        async with engine.begin() as conn:
            await conn.execute(accounts.insert().values(**row))
            await conn.execute(accounts.insert().values(**row))
        return Response("unreachable")

    app.add_route("/test/duplicate", duplicate_account)
    with caplog.at_level(logging.ERROR, logger="service.http"):
        answer = await client.get("/test/duplicate")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error", "code": "INTERNAL_ERROR",
                             "retryable": False}
    assert "Retry-After" not in answer.headers
    (record,) = [r for r in caplog.records if r.message == "unhandled error"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], sa.exc.IntegrityError)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "INTERNAL_ERROR"),
        (sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), "INTERNAL_ERROR"),
        (sa.exc.DBAPIError("SELECT", {}, Exception("syntax")), "INTERNAL_ERROR"),
        (sa.exc.OperationalError("SELECT", {}, Exception("database is locked")),
         "DATABASE_UNAVAILABLE"),
        (sa.exc.InterfaceError("SELECT", {}, Exception("connection is closed")),
         "DATABASE_UNAVAILABLE"),
        (sa.exc.DBAPIError(None, None, ConnectionRefusedError(111, "refused")),
         "DATABASE_UNAVAILABLE"),
        (sa.exc.TimeoutError("QueuePool limit reached"), "DATABASE_UNAVAILABLE"),
        (ConnectionResetError(104, "reset by peer"), "DATABASE_UNAVAILABLE"),
        (StorageUnavailable("disk full"), "STORAGE_UNAVAILABLE"),
        (ProviderError("PROVIDER_TIMEOUT", "slow", retryable=True), "PROVIDER_TIMEOUT"),
        (ValueError("a bug"), "INTERNAL_ERROR"),
    ],
)
def test_each_failure_is_described_exactly(exc: BaseException, code: str) -> None:
    """Only connection-level database failures are DATABASE_UNAVAILABLE (retryable);
    storage faults are STORAGE_UNAVAILABLE; anything else unexpected is a 500 that is
    not retryable."""
    info = describe(exc)
    assert info.code == code
    assert info.retryable is (code != "INTERNAL_ERROR")
    assert info.status == {"INTERNAL_ERROR": 500, "PROVIDER_TIMEOUT": 504}.get(code, 503)


def test_a_recorded_error_answers_with_its_codes_status() -> None:
    """A run's recorded error keeps its code, message, retryability and delay (whole
    seconds) and is answered with its code's status."""
    recorded = ProviderError("PROVIDER_RATE_LIMITED", "slow down", retryable=True,
                             retry_after=2.2).info.record()
    assert recorded == {"code": "PROVIDER_RATE_LIMITED", "message": "slow down",
                        "retryable": True, "retry_after": 3}
    info = RunError(ErrorInfo.of_record(recorded)).info
    assert (info.status, info.code, info.retry_after) == (503, "PROVIDER_RATE_LIMITED", 3)
    assert info.answer_headers() == {"Retry-After": "3"}
    assert ErrorInfo.of_record({"code": "CONTENT_BLOCKED"}).status == 422


async def test_a_refused_heatmap_upload_stores_nothing(service_env, tmp_path):
    """An upload refused by the rate limit (429) is never written to storage."""
    from service import Settings, create_app
    from tests.service.conftest import in_process

    limits = tmp_path / "limits.toml"
    limits.write_text("[routes.heatmap]\nlimit = 1\nwindow_s = 3600\n")
    await set_account(service_env, "user-1", "advanced", 10)
    app = create_app(Settings.from_env({**service_env, "RATE_LIMITS": str(limits)}))
    async with in_process(app) as manager, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
    ) as client:
        first = await client.post("/v1/heatmaps", json={"image_base64": png_base64("teal"),
                                                        "mime_type": "image/png"},
                                  headers=auth())
        assert first.status_code == 200, first.text
        refused = await client.post("/v1/heatmaps", json={"image_base64": png_base64("red"),
                                                          "mime_type": "image/png"},
                                    headers=auth())
        assert refused.status_code == 429
    uploads = list((tmp_path / "data" / "objects" / "uploads").iterdir())
    assert len(uploads) == 1
