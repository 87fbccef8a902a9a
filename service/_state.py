"""What the lifespan builds and the handlers use: `request.app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

import ratelimit
from checkpoints import CheckpointStore

from ._accounts import Accounts
from ._auth import Authenticator
from ._fetch import ImageFetcher
from ._metrics import Metrics
from ._operations import Operations
from ._present import Presenter
from ._settings import Settings
from ._storage import LocalStorage, Storage


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    store: CheckpointStore
    operations: Operations
    accounts: Accounts
    storage: Storage
    local_storage: LocalStorage | None
    auth: Authenticator
    limiter: ratelimit.RateLimiter
    metrics: Metrics
    presenter: Presenter
    http: httpx.AsyncClient
    fetcher: ImageFetcher
