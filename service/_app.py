"""The Starlette application factory and its lifespan."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import checkpoints
import ratelimit
from checkpoints import CheckpointStore, Runner, StepContext

from . import _routes as r
from ._accounts import Accounts
from ._auth import Authenticator, load_secret
from ._edit import EditKind
from ._errors import ServiceError
from ._fetch import ImageFetcher
from ._gemini import GeminiProvider
from ._generate import GenerateKind
from ._heatmap import HeatmapKind
from ._http import EXCEPTION_HANDLERS, BodyLimit
from ._kinds import OperationKind, ProviderCalls
from ._logging import configure_logging
from ._metrics import Metrics
from ._openai import OpenAIProvider
from ._openapi import openapi_endpoint
from ._operations import Operations
from ._present import Presenter
from ._providers import ImageProvider, LocalProvider, ProviderChain, ProviderError
from ._retry import RetryPolicy
from ._settings import Settings
from ._state import Services
from ._storage import LocalStorage, Storage, SupabaseStorage
from ._video import VideoKind

log = logging.getLogger("service")


def create_app(settings: Settings, *, retry: RetryPolicy | None = None) -> Starlette:
    """The service for `settings`; everything stateful is built in the lifespan.

    `retry` replaces the provider retry policy built from the settings (tests pass one
    with a fake sleep and clock).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        configure_logging(settings.log_format)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = checkpoints.create_engine(settings.database_url)
        store = CheckpointStore(engine)
        metrics = Metrics()
        limiter = ratelimit.RateLimiter.from_url(
            settings.redis_url,
            ratelimit.load_policies(settings.rate_limits_file),
            trusted_proxies=[str(n) for n in settings.trusted_proxies],
            registry=metrics.registry,
            slot_ttl_s=settings.lease_ttl_s,
        )
        if settings.redis_url is None:
            log.warning("REDIS_URL is not set: rate limits are kept in this process only "
                        "(run a single instance)")
        ratelimit.install_rate_limiter(app, limiter)
        secret = load_secret(settings.auth_jwt_secret, settings.data_dir)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        local_storage: LocalStorage | None = None
        storage: Storage
        if settings.storage_backend == "supabase":
            assert settings.supabase_url
            assert settings.supabase_service_role_key
            storage = SupabaseStorage(http, settings.supabase_url,
                                      settings.supabase_service_role_key)
        else:
            storage = local_storage = LocalStorage(settings.data_dir / "objects", secret)
        presenter = Presenter(storage, settings.public_base_url)
        fetcher = ImageFetcher(http, allow_private=settings.allow_private_urls)
        policy = retry or RetryPolicy(
            max_attempts=settings.provider_max_attempts,
            attempt_timeout_s=settings.provider_attempt_timeout_s,
            max_total_s=settings.provider_max_time_s,
        )
        calls = ProviderCalls(ProviderChain(_image_providers(settings, http, fetcher)), policy)
        gemini = None
        if settings.gemini_api_key:
            gemini = GeminiProvider(http, settings.gemini_api_key, settings.gemini_base_url,
                                    fetcher)
        accounts = Accounts(engine)
        kinds: dict[str, OperationKind] = {
            "thumbnail.generate": GenerateKind(accounts, storage, calls, engine,
                                               presenter.sign),
            "thumbnail.edit": EditKind(accounts, storage, calls, engine, presenter.sign),
            "heatmap": HeatmapKind(storage, calls, fetcher, engine,
                                   timedelta(seconds=settings.heatmap_cache_s)),
        }
        if gemini is not None:
            kinds["video.analyze"] = VideoKind(
                gemini, policy, http, settings.youtube_api_key, settings.youtube_base_url,
                engine, timedelta(seconds=settings.video_analysis_cache_s),
            )
        runner = Runner(
            store, owner=settings.instance_id, lease_ttl=settings.lease_ttl_s,
            wrap=_step_wrapper(metrics), describe_error=describe_step_error,
        )
        async def slot_for(op: checkpoints.Operation) -> ratelimit.Slot:
            return await limiter.acquire_slot(
                r.ROUTE_OF_KIND[op.kind], op.user_id, ttl_s=settings.lease_ttl_s
            )

        operations = Operations(
            store, runner, kinds, presenter,
            on_finished=lambda op, outcome: metrics.operations.labels(op.kind, outcome).inc(),
            slot_for=slot_for,
        )
        app.state.services = Services(
            settings=settings, engine=engine, store=store, operations=operations,
            accounts=accounts, storage=storage, local_storage=local_storage,
            auth=Authenticator(secret), limiter=limiter, metrics=metrics,
            presenter=presenter, http=http, fetcher=fetcher,
        )
        try:
            yield
        finally:
            await operations.shutdown(settings.shutdown_grace_s)
            await limiter.aclose()
            await http.aclose()
            await store.close()
            await engine.dispose()

    routes = [
        Route("/v1/thumbnails", r.create_thumbnails, methods=["POST"]),
        Route("/v1/thumbnails/{thumbnail_id}/edits", r.create_edit, methods=["POST"]),
        Route("/v1/heatmaps", r.create_heatmap, methods=["POST"]),
        Route("/v1/videos/analyses", r.create_video_analysis, methods=["POST"]),
        Route("/v1/operations/{operation_id}", r.get_operation, methods=["GET"]),
        Route("/v1/operations/{operation_id}/events", r.operation_events, methods=["GET"]),
        Route("/v1/operations/{operation_id}/resume", r.resume_operation, methods=["POST"]),
        Route("/v1/operations/{operation_id}/cancel", r.cancel_operation, methods=["POST"]),
        Route("/v1/account", r.get_account, methods=["GET"]),
        Route("/v1/files/{key:path}", r.get_file, methods=["GET"]),
        Route("/", r.index, methods=["GET"]),
        Route("/healthz", r.healthz, methods=["GET"]),
        Route("/readyz", r.readyz, methods=["GET"]),
        Route("/metrics", r.metrics, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Mount("/static", StaticFiles(directory=r.STATIC), name="static"),
    ]
    if settings.is_dev_auth:
        routes.append(Route("/v1/dev/token", r.dev_token, methods=["POST"]))
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, max_bytes=settings.max_body_bytes)],
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )


def _image_providers(
    settings: Settings, http: httpx.AsyncClient, fetcher: ImageFetcher
) -> list[ImageProvider]:
    """IMAGE_PROVIDERS in order (their keys were checked with the settings)."""
    providers: list[ImageProvider] = []
    for name in settings.image_providers:
        if name == "gemini" and settings.gemini_api_key:
            providers.append(GeminiProvider(http, settings.gemini_api_key,
                                            settings.gemini_base_url, fetcher))
        elif name == "openai" and settings.openai_api_key:
            providers.append(OpenAIProvider(http, settings.openai_api_key,
                                            settings.openai_base_url, fetcher))
        elif name == "local":
            providers.append(LocalProvider(delay_ms=settings.local_provider_delay_ms))
    return providers


def describe_step_error(exc: BaseException) -> dict[str, Any]:
    """The recorded error of a failed step: the contract's code and a message for people.
    Anything unexpected is logged in full and reported without its details."""
    if isinstance(exc, ProviderError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message,
                                 "retryable": exc.retryable}
        if exc.retry_after is not None:
            error["retry_after"] = max(1, math.ceil(exc.retry_after))
        return error
    if isinstance(exc, ServiceError):
        return {"code": exc.code, "message": exc.message, "retryable": exc.retryable}
    log.error("step failed unexpectedly", exc_info=exc)
    return {"code": "INTERNAL_ERROR", "message": "the step failed unexpectedly",
            "retryable": True}


def _step_wrapper(
    metrics: Metrics,
) -> Callable[[StepContext, Callable[[], Awaitable[Any]]], Awaitable[Any]]:
    """One log line and one histogram observation per executed step."""

    async def wrap(ctx: StepContext, call: Callable[[], Awaitable[Any]]) -> Any:
        started = time.perf_counter()
        outcome = "failed"
        try:
            output = await call()
            outcome = "completed"
            return output
        finally:
            elapsed = time.perf_counter() - started
            step_name = ctx.step.key.rpartition("/")[2]
            metrics.step_seconds.labels(ctx.operation.kind, step_name, outcome).observe(elapsed)
            log.info(
                "step",
                extra={"operation_id": ctx.operation.id, "user_id": ctx.operation.user_id,
                       "step": ctx.step.key, "duration_ms": round(elapsed * 1000),
                       "outcome": outcome},
            )

    return wrap
