"""The OpenAPI 3.1 description of every endpoint, body and error (/openapi.json).

The paths are written here; every request and response schema comes from its pydantic
model (`_bodies`, `_responses`), the same that parses the requests and builds the answers.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._bodies import EditBody, GenerateBody, HeatmapBody, VideoAnalysisBody
from ._responses import RESPONSE_MODELS, AccountBody, DevToken


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


RATE_LIMIT_HEADERS = {
    "RateLimit-Policy": {"schema": {"type": "string"}},
    "RateLimit": {"schema": {"type": "string"}},
}
COMMON_ERRORS = {
    "401": _error("UNAUTHORIZED: missing, bad or expired token"),
    "404": _error("NOT_FOUND"),
    "413": _error("PAYLOAD_TOO_LARGE"),
    "429": _error("RATE_LIMIT_EXCEEDED (with Retry-After)"),
    "503": _error("RATE_LIMIT_UNAVAILABLE, PROVIDER_NOT_CONFIGURED or DATABASE_UNAVAILABLE"),
}
RUN_ERRORS = {
    "402": _error("INSUFFICIENT_CREDITS"),
    "403": _error("TIER_LIMIT"),
    "409": _error("OPERATION_CANCELLED"),
    "422": _error("IDEMPOTENCY_KEY_REUSED or CONTENT_BLOCKED"),
    "400": _error("VALIDATION_ERROR"),
    "502": _error("PROVIDER_BAD_OUTPUT or PROVIDER_ERROR"),
    "504": _error("PROVIDER_TIMEOUT"),
}
NEGOTIATED = {
    "200": {
        "description": "JSON `{operation}` when the run ended, or the SSE stream of the run "
        "(Accept: text/event-stream)",
        "headers": RATE_LIMIT_HEADERS,
        "content": {
            "application/json": {"schema": {
                "type": "object", "required": ["operation"],
                "properties": {"operation": {"$ref": "#/components/schemas/OperationSnapshot"}},
            }},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    },
    "202": _json("Accepted", "the run goes on (Prefer: respond-async, or the sync wait ran out)"),
}
SECURITY: list[dict[str, list[str]]] = [{"bearer": []}]
OPERATION_ID = {"name": "operation_id", "in": "path", "required": True,
                "schema": {"type": "string", "maxLength": 36}}
IDEMPOTENCY = {"name": "Idempotency-Key", "in": "header", "required": False,
               "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                          "pattern": "^[!-~]([ -~]*[!-~])?$"}}
EVENTS_TOKEN = {"name": "token", "in": "query", "required": False,
                "schema": {"type": "string"},
                "description": "short-lived token of `links.events` (for EventSource)"}
CURSOR = [
    {"name": "Last-Event-ID", "in": "header", "required": False,
     "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
    {"name": "last_event_id", "in": "query", "required": False,
     "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
]


def _creation(body: type[Any], summary: str, extra: list[Any] | None = None) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "security": SECURITY,
        "parameters": [IDEMPOTENCY, *(extra or [])],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body.__name__}"}}}},
        "responses": {**NEGOTIATED, **COMMON_ERRORS, **RUN_ERRORS},
    }}


@cache
def document(*, dev_token: bool = False) -> dict[str, Any]:
    """The description; `dev_token`: the dev-mode token endpoint exists (no real secret)."""
    schemas = _schemas((GenerateBody, EditBody, HeatmapBody, VideoAnalysisBody),
                       RESPONSE_MODELS)
    paths = {**_creation_paths(), **_operation_paths(), **_system_paths()}
    if dev_token:
        paths["/v1/dev/token"] = {"post": {
            "summary": "A token for the demo user (only without AUTH_JWT_SECRET)",
            "responses": {"200": _json(DevToken.__name__, "the token")},
        }}
    return {
        "openapi": "3.1.0",
        "info": {"title": "ViewBait AI service", "version": "1.0.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


def _creation_paths() -> dict[str, Any]:
    return {
        "/v1/thumbnails": _creation(GenerateBody, "Generate thumbnails"),
        "/v1/thumbnails/{thumbnail_id}/edits": _creation(
            EditBody, "A new thumbnail from one of the caller's own",
            [{"name": "thumbnail_id", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": 36}}],
        ),
        "/v1/heatmaps": _creation(HeatmapBody, "An attention heatmap of an image"),
        "/v1/videos/analyses": _creation(VideoAnalysisBody, "Analyze a YouTube video"),
    }


def _operation_paths() -> dict[str, Any]:
    return {
        "/v1/operations/{operation_id}": {"get": {
            "summary": "The operation snapshot", "security": SECURITY,
            "parameters": [OPERATION_ID],
            "responses": {"200": _json("OperationSnapshot", "the snapshot"), **COMMON_ERRORS},
        }},
        "/v1/operations/{operation_id}/events": {"get": {
            "summary": "Server-Sent Events of the operation: replay, then live",
            "security": [{"bearer": []}, {}],
            "parameters": [OPERATION_ID, EVENTS_TOKEN, *CURSOR],
            "responses": {
                "200": {"description": "the event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                "204": {"description": "finished, nothing left to replay"},
                "400": _error("VALIDATION_ERROR: bad Last-Event-ID"),
                **COMMON_ERRORS,
            },
        }},
        "/v1/operations/{operation_id}/resume": {"post": {
            "summary": "Resume an interrupted or retryably failed operation",
            "security": [{"bearer": []}, {}],
            "parameters": [OPERATION_ID, EVENTS_TOKEN, *CURSOR],
            "responses": {**NEGOTIATED, **COMMON_ERRORS, **RUN_ERRORS,
                          "409": _error("OPERATION_NOT_RESUMABLE")},
        }},
        "/v1/operations/{operation_id}/cancel": {"post": {
            "summary": "Stop starting paid work; refund what was not delivered",
            "security": SECURITY, "parameters": [OPERATION_ID],
            "responses": {"200": _json("OperationSnapshot", "finished (cancelled or earlier)"),
                          "202": _json("OperationSnapshot", "cancelling"), **COMMON_ERRORS},
        }},
        "/v1/account": {"get": {
            "summary": "Tier and credits", "security": SECURITY,
            "responses": {"200": _json(AccountBody.__name__, "the account"), **COMMON_ERRORS},
        }},
    }


def _system_paths() -> dict[str, Any]:
    return {
        "/v1/files/{key}": {"get": {
            "summary": "An image behind a signed URL",
            "parameters": [
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "expires", "in": "query", "required": True,
                 "schema": {"type": "string"}},
                {"name": "signature", "in": "query", "required": True,
                 "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "the image", "content": {
                "image/png": {}, "image/jpeg": {}}}, "404": _error("NOT_FOUND")},
        }},
        "/": {"get": {"summary": "The studio page",
                      "responses": {"200": {"description": "HTML",
                                            "content": {"text/html": {}}}}}},
        "/healthz": {"get": {"summary": "Liveness",
                             "responses": {"200": {"description": "alive"}}}},
        "/readyz": {"get": {"summary": "Readiness (database, Redis)",
                            "responses": {"200": {"description": "ready"},
                                          "503": {"description": "a dependency is down"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition",
                                                   "content": {"text/plain": {}}}}}},
    }


def _schemas(
    requests: tuple[type[BaseModel], ...], responses: tuple[type[BaseModel], ...]
) -> dict[str, Any]:
    """The JSON schemas of request bodies (as validated) and of answers (as serialised),
    with the models they nest, by model name."""
    _, top = models_json_schema(
        [*((m, "validation") for m in requests), *((m, "serialization") for m in responses)],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    return schemas


async def openapi_endpoint(request: Request) -> Response:
    settings = request.app.state.services.settings
    return JSONResponse(document(dev_token=settings.is_dev_auth))
