"""Endpoints around the API: signed files, the studio page, health, readiness, metrics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from .._errors import NotFound
from ._services import services_of

STATIC = Path(__file__).parent.parent / "static"
#: Readiness gives the database this long to answer.
READY_TIMEOUT_S = 2.0


async def get_file(request: Request) -> Response:
    """A stored object behind a signed local link (404 when the link is bad or expired)."""
    svc = services_of(request)
    key = request.path_params["key"]
    storage = svc.local_storage
    if storage is None or not storage.verify(
        key, request.query_params.get("expires", ""), request.query_params.get("signature", "")
    ):
        raise NotFound("no such file, or its link has expired")
    data, content_type = await storage.get(key)
    return Response(data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=86400, immutable"})


async def index(_request: Request) -> Response:
    """The studio page (plain HTML, CSS and JavaScript; no build step)."""
    return FileResponse(STATIC / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services_of(request)
    checks: dict[str, str] = {}
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            async with svc.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError):
        checks["database"] = "unreachable"
    if svc.settings.redis_url is None:
        checks["redis"] = "not configured"
    else:
        checks["redis"] = "ok" if await svc.limiter.ping() else "unreachable"
    ready = all(v in ("ok", "not configured") for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks},
                        status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    svc = services_of(request)
    return Response(generate_latest(svc.metrics.registry), media_type=CONTENT_TYPE_LATEST)
