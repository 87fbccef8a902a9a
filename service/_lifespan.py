"""What the app builds when it starts and closes when it stops: the database engine and
checkpoint store, the rate limiter, the HTTP client, storage, providers and operations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

import checkpoints
import ratelimit
from checkpoints import CheckpointStore, Runner

from ._database import check_notifications, create_engine
from ._errors import record_of_step_error
from ._logging import configure_logging
from ._metrics import Metrics, timed_steps
from ._settings import Settings
from ._storage import LocalStorage, Storage, SupabaseStorage
from .accounts import (
    Accounts,
    AccountsBackend,
    ServiceThumbnails,
    ThumbnailRows,
    ViewBaitAccounts,
    ViewBaitThumbnails,
    check_viewbait_database,
)
from .operations import (
    ROUTE_OF_KIND,
    EditKind,
    GenerateKind,
    HeatmapKind,
    OperationKind,
    Operations,
    ProviderCalls,
    VideoKind,
)
from .providers import (
    GeminiProvider,
    ImageFetcher,
    ImageProvider,
    LocalProvider,
    OpenAIProvider,
    ProviderChain,
    RetryPolicy,
    YouTube,
)
from .web import Authenticator, KeySet, Services, Snapshots, load_secret, public_output

log = logging.getLogger("service")

#: Timeouts of the HTTP client of providers and storage (each call may set its own).
HTTP_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class OutsideWorld:
    """What tests replace: the retry policy of provider calls, the transport of every
    outgoing HTTP request, and the clock (seconds since the epoch)."""

    retry: RetryPolicy | None = None
    transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.time


def lifespan(settings: Settings, world: OutsideWorld) -> Callable[
    [Starlette], contextlib.AbstractAsyncContextManager[None]
]:
    """The app's lifespan: `app.state.services` while it runs."""

    @contextlib.asynccontextmanager
    async def run(app: Starlette) -> AsyncIterator[None]:
        configure_logging(settings.log_format)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings)
        try:
            await check_notifications(engine)
            if settings.is_viewbait:
                await check_viewbait_database(engine, settings.database_schema)
        except BaseException:
            await engine.dispose()
            raise
        store = CheckpointStore(engine, clock=world.clock)
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
        http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, transport=world.transport)
        app.state.services = _services(settings, world, engine, store, limiter, metrics, http)
        sweeper = asyncio.create_task(app.state.services.operations.sweep(settings.lease_ttl_s),
                                      name="orphaned runs")
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await app.state.services.operations.shutdown(settings.shutdown_grace_s)
            await limiter.aclose()
            await http.aclose()
            await store.close()
            await engine.dispose()

    return run


def _services(
    settings: Settings, world: OutsideWorld, engine: AsyncEngine,
    store: CheckpointStore, limiter: ratelimit.RateLimiter, metrics: Metrics,
    http: httpx.AsyncClient,
) -> Services:
    signing_secret = load_secret(settings.signing_secret, settings.data_dir, "signing-secret")
    local_storage: LocalStorage | None = None
    storage: Storage
    if settings.storage_backend == "supabase":
        assert settings.supabase_url
        assert settings.supabase_service_role_key
        storage = SupabaseStorage(http, settings.supabase_url, settings.supabase_service_role_key)
    else:
        storage = local_storage = LocalStorage(settings.data_dir / "objects", signing_secret,
                                               clock=world.clock)
    snapshots = Snapshots(storage, settings.public_base_url)
    fetcher = ImageFetcher(http, allow_private=settings.allow_private_urls)
    accounts, thumbnails = _books(settings, world, engine, snapshots.sign)
    runner = Runner(store, owner=settings.instance_id, lease_ttl=settings.lease_ttl_s,
                    wrap=timed_steps(metrics), describe_error=record_of_step_error,
                    public_output=public_output)

    async def slot_for(op: checkpoints.Operation) -> ratelimit.Slot:
        return await limiter.acquire_slot(ROUTE_OF_KIND[op.kind], op.user_id,
                                          ttl_s=settings.lease_ttl_s)

    operations = Operations(
        store, runner, _kinds(settings, world, http, engine, storage, fetcher,
                              (accounts, thumbnails), snapshots.sign),
        snapshots.of,
        on_finished=lambda op, outcome: metrics.operations.labels(op.kind, outcome).inc(),
        slot_for=slot_for,
    )
    return Services(
        settings=settings, engine=engine, store=store, operations=operations,
        accounts=accounts, thumbnails=thumbnails, storage=storage,
        local_storage=local_storage,
        auth=_authenticator(settings, world, http, signing_secret), limiter=limiter,
        metrics=metrics,
        snapshots=snapshots, http=http, fetcher=fetcher,
    )


def authenticator(
    settings: Settings, signing_secret: str, key_set: KeySet | None = None,
    clock: Callable[[], float] = time.time,
) -> Authenticator:
    """Token checks as the settings ask: HS256 with AUTH_JWT_SECRET (or, in dev mode, the
    dev secret), ES256/RS256 with the issuer's key set."""
    hs_secret = settings.auth_jwt_secret
    if settings.is_dev_auth:
        hs_secret = load_secret(None, settings.data_dir, "dev-jwt-secret")
    return Authenticator(hs_secret=hs_secret, key_set=key_set, signing_secret=signing_secret,
                         audiences=settings.auth_audiences, issuer=settings.auth_issuer,
                         clock=clock)


def _authenticator(
    settings: Settings, world: OutsideWorld, http: httpx.AsyncClient, signing_secret: str
) -> Authenticator:
    key_set = None
    if settings.auth_jwks_url is not None:
        key_set = KeySet(http, settings.auth_jwks_url, clock=world.clock)
    return authenticator(settings, signing_secret, key_set, world.clock)


def _books(
    settings: Settings, world: OutsideWorld, engine: AsyncEngine,
    sign: Callable[[str], Awaitable[str]],
) -> tuple[AccountsBackend, ThumbnailRows]:
    """Whose tiers, credits and thumbnails: the service's tables or ViewBait's."""
    if settings.is_viewbait:
        return (ViewBaitAccounts(engine, schema=settings.database_schema,
                                 stripe_mode=settings.stripe_mode, clock=world.clock),
                ViewBaitThumbnails(engine, sign))
    return Accounts(engine), ServiceThumbnails(engine)


def _kinds(
    settings: Settings, world: OutsideWorld, http: httpx.AsyncClient,
    engine: AsyncEngine, storage: Storage, fetcher: ImageFetcher,
    books: tuple[AccountsBackend, ThumbnailRows], sign: Callable[[str], Awaitable[str]],
) -> dict[str, OperationKind]:
    """The operation kinds this deployment can run (video analysis needs Gemini)."""
    policy = world.retry or RetryPolicy(
        max_attempts=settings.provider_max_attempts,
        attempt_timeout_s=settings.provider_attempt_timeout_s,
        max_total_s=settings.provider_max_time_s,
    )
    calls = ProviderCalls(ProviderChain(_image_providers(settings, http, fetcher)), policy)
    accounts, thumbnails = books
    kinds: dict[str, OperationKind] = {
        "thumbnail.generate": GenerateKind(accounts, thumbnails, storage, calls, sign),
        "thumbnail.edit": EditKind(accounts, thumbnails, storage, calls, sign),
        "heatmap": HeatmapKind(thumbnails, storage, calls, fetcher, engine,
                               timedelta(seconds=settings.heatmap_cache_s)),
    }
    if settings.gemini_api_key:
        gemini = GeminiProvider(http, settings.gemini_api_key, settings.gemini_base_url, fetcher)
        youtube = None
        if settings.youtube_api_key:
            youtube = YouTube(http, settings.youtube_api_key, settings.youtube_base_url)
        kinds["video.analyze"] = VideoKind(gemini, policy, youtube, engine,
                                           timedelta(seconds=settings.video_analysis_cache_s))
    return kinds


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
