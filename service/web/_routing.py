"""The route table of the contract's endpoints."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._settings import Settings
from . import _creation as create
from . import _operation_endpoints as ops
from . import _system_endpoints as system
from ._openapi import openapi_endpoint


def routes(settings: Settings) -> list[BaseRoute]:
    """Every endpoint; `POST /v1/dev/token` only in dev mode (no real secret)."""
    table: list[BaseRoute] = [
        Route("/v1/thumbnails", create.create_thumbnails, methods=["POST"]),
        Route("/v1/thumbnails/{thumbnail_id}/edits", create.create_edit, methods=["POST"]),
        Route("/v1/heatmaps", create.create_heatmap, methods=["POST"]),
        Route("/v1/videos/analyses", create.create_video_analysis, methods=["POST"]),
        Route("/v1/operations/{operation_id}", ops.get_operation, methods=["GET"]),
        Route("/v1/operations/{operation_id}/events", ops.operation_events, methods=["GET"]),
        Route("/v1/operations/{operation_id}/resume", ops.resume_operation, methods=["POST"]),
        Route("/v1/operations/{operation_id}/cancel", ops.cancel_operation, methods=["POST"]),
        Route("/v1/account", ops.get_account, methods=["GET"]),
        Route("/v1/files/{key:path}", system.get_file, methods=["GET"]),
        Route("/", system.index, methods=["GET"]),
        Route("/healthz", system.healthz, methods=["GET"]),
        Route("/readyz", system.readyz, methods=["GET"]),
        Route("/metrics", system.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Mount("/static", StaticFiles(directory=system.STATIC), name="static"),
    ]
    if settings.is_dev_auth:
        table.append(Route("/v1/dev/token", ops.dev_token, methods=["POST"]))
    return table
