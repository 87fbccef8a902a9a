"""What the lifespan builds and the handlers use: `request.app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

import ratelimit
from checkpoints import CheckpointStore

from .._metrics import Metrics
from .._settings import Settings
from .._storage import LocalStorage, Storage
from ..accounts import AccountsBackend, ThumbnailRows
from ..operations import Operations
from ..providers import ImageFetcher
from ._auth import Authenticator
from ._event_stream import EncodedEvents
from ._snapshots import Snapshots


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    store: CheckpointStore
    operations: Operations
    accounts: AccountsBackend
    thumbnails: ThumbnailRows
    storage: Storage
    local_storage: LocalStorage | None
    auth: Authenticator
    limiter: ratelimit.RateLimiter
    metrics: Metrics
    snapshots: Snapshots
    http: httpx.AsyncClient
    fetcher: ImageFetcher
    encoded_events: EncodedEvents = field(default_factory=EncodedEvents)


def services_of(request: Request) -> Services:
    """The services of the app that serves `request`."""
    services: Services = request.app.state.services
    return services
