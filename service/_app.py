"""The Starlette application factory and its lifespan."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
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
from ._generate import GenerateKind
from ._http import EXCEPTION_HANDLERS, BodyLimit
from ._kinds import OperationKind
from ._logging import configure_logging
from ._metrics import Metrics
from ._openapi import openapi_endpoint
from ._operations import Operations
from ._present import Presenter
from ._providers import ImageProvider, LocalProvider, ProviderChain
from ._settings import Settings, SettingsError
from ._state import Services
from ._storage import LocalStorage

log = logging.getLogger("service")


def create_app(settings: Settings) -> Starlette:
    """The service for `settings`; everything stateful is built in the lifespan."""

    image_providers = _image_providers(settings)  # a bad IMAGE_PROVIDERS fails here

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
        local_storage = LocalStorage(settings.data_dir / "objects", secret)
        presenter = Presenter(local_storage, settings.public_base_url)
        http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        accounts = Accounts(engine)
        chain = ProviderChain(image_providers)
        kinds: dict[str, OperationKind] = {
            "thumbnail.generate": GenerateKind(accounts, local_storage, chain, engine),
        }
        runner = Runner(
            store, owner=settings.instance_id, lease_ttl=settings.lease_ttl_s,
            wrap=_step_wrapper(metrics),
        )
        operations = Operations(
            store, runner, kinds, presenter,
            on_finished=lambda op, outcome: metrics.operations.labels(op.kind, outcome).inc(),
        )
        app.state.services = Services(
            settings=settings, engine=engine, store=store, operations=operations,
            accounts=accounts, storage=local_storage, local_storage=local_storage,
            auth=Authenticator(secret), limiter=limiter, metrics=metrics,
            presenter=presenter, http=http,
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


def _image_providers(settings: Settings) -> list[ImageProvider]:
    providers: list[ImageProvider] = []
    for name in settings.image_providers:
        if name == "local":
            providers.append(LocalProvider(delay_ms=settings.local_provider_delay_ms))
        else:
            raise SettingsError(f"IMAGE_PROVIDERS: the {name} provider is not available yet")
    return providers


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
