"""Settings, read once from the environment (and `.env`) into a frozen value.

Every name is the contract's (DESIGN.md, "Settings"); a wrong value fails at start-up with
a `SettingsError` naming the variable.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from dotenv import dotenv_values

import ratelimit

from ._errors import SettingsError

PROVIDERS = ("local", "gemini", "openai")
#: Supabase's transaction-mode pooler (Supavisor): no LISTEN/NOTIFY, no prepared statements.
TRANSACTION_POOLER_PORT = 6543
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0,
    maximum: float | None = None,
) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; the first when unset."""
    raw = (env.get(name) or choices[0]).strip()
    if raw not in choices:
        raise SettingsError(f"{name} must be {' or '.join(choices)}, got {raw!r}")
    return raw


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _url(env: Mapping[str, str], name: str) -> str | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("./.viewbait")
    database_url: str = "sqlite+aiosqlite:///.viewbait/viewbait.db"
    redis_url: str | None = None
    auth_jwt_secret: str | None = None
    #: The JWK Set of the token issuer (ES256/RS256 access tokens).
    auth_jwks_url: str | None = None
    #: Accepted `aud` values of user tokens; the required `iss`, if any.
    auth_audiences: tuple[str, ...] = ("authenticated",)
    auth_issuer: str | None = None
    #: Secret of the links the service signs itself (events links, local object URLs);
    #: None = one generated in DATA_DIR.
    signing_secret: str | None = None
    #: Browser origins allowed to call the API (CORS); none = no CORS headers.
    cors_origins: tuple[str, ...] = ()
    #: Let the offline `local` provider serve real users (demos only: its images are
    #: placeholders that would be charged as thumbnails).
    allow_local_provider: bool = False
    image_providers: tuple[str, ...] = ("local",)
    gemini_api_key: str | None = None
    gemini_base_url: str = "https://generativelanguage.googleapis.com"
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com"
    youtube_api_key: str | None = None
    youtube_base_url: str = "https://www.googleapis.com/youtube/v3"
    local_provider_delay_ms: int = 0
    rate_limits_file: Path | None = None
    storage_backend: str = "local"
    supabase_url: str | None = None
    supabase_service_role_key: str | None = None
    trusted_proxies: tuple[IPNetwork, ...] = ()
    public_base_url: str | None = None
    #: Let image URLs point at private/loopback addresses (development only).
    allow_private_urls: bool = False
    log_format: str = "text"
    #: How long a run's lease lives without renewal: a crashed owner's runs (and their
    #: concurrency slots) are taken over after at most this long.
    lease_ttl_s: float = 15.0
    #: How long a plain JSON creation request waits for the result before answering 202.
    sync_wait_s: float = 120.0
    #: On SIGTERM, how long runs may take to checkpoint their current step.
    shutdown_grace_s: float = 20.0
    #: Seconds between the comment heartbeats of event streams (proxies idle out).
    heartbeat_s: float = 15.0
    #: Requests with a larger body are refused with 413 (a 10 MB image in base64 fits).
    max_body_bytes: int = 14 * 1024 * 1024
    #: Provider calls: tries per call (at least 3), seconds per try, seconds in all.
    provider_max_attempts: int = 4
    provider_attempt_timeout_s: float = 90.0
    provider_max_time_s: float = 180.0
    #: How long an identical image's heatmap and a video's analysis are reused.
    heatmap_cache_s: float = 30 * 86400.0
    video_analysis_cache_s: float = 86400.0
    #: Instance name in leases and logs (default: host name and process id).
    instance_id: str = field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    #: Whose books: `service` (our own accounts, ledger and thumbnails tables) or
    #: `viewbait` (ViewBait's Supabase tables and credit functions; PostgreSQL only).
    accounts_backend: str = "service"
    #: PostgreSQL schema of the service's own tables.
    database_schema: str = "public"
    #: Which product id column of ViewBait's `subscription_tiers` users' tiers match.
    stripe_mode: str = "live"

    @property
    def is_viewbait(self) -> bool:
        """ViewBait's tables hold tiers, credits and thumbnails."""
        return self.accounts_backend == "viewbait"

    @property
    def is_dev_auth(self) -> bool:
        """Neither a secret nor a key set: a dev secret in DATA_DIR, and POST /v1/dev/token
        exists."""
        return self.auth_jwt_secret is None and self.auth_jwks_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: the process environment over `.env`)."""
        if env is None:
            env = {**read_dotenv(Path(".env")), **os.environ}
        data_dir = Path(env.get("DATA_DIR") or "./.viewbait")
        storage, supabase_url, supabase_key = _storage(env)
        d = cls()
        database_url = _database_url(env, data_dir)
        backend = _choice(env, "ACCOUNTS_BACKEND", ("service", "viewbait"))
        settings = cls(
            data_dir=data_dir,
            database_url=database_url,
            accounts_backend=backend,
            database_schema=_database_schema(env, database_url, backend),
            stripe_mode=_choice(env, "STRIPE_MODE", ("live", "test")),
            redis_url=_redis_url(env),
            auth_jwt_secret=_secret(env, "AUTH_JWT_SECRET"),
            auth_jwks_url=_url(env, "AUTH_JWKS_URL") or (
                f"{supabase_url}/auth/v1/.well-known/jwks.json" if supabase_url else None),
            auth_audiences=_list(env, "AUTH_AUDIENCES") or d.auth_audiences,
            auth_issuer=(env.get("AUTH_ISSUER") or "").strip() or (
                f"{supabase_url}/auth/v1" if supabase_url else None),
            signing_secret=_secret(env, "SIGNING_SECRET"),
            cors_origins=_origins(env, "CORS_ORIGINS"),
            image_providers=_providers(env),
            gemini_api_key=env.get("GEMINI_API_KEY") or None,
            gemini_base_url=_url(env, "GEMINI_BASE_URL") or d.gemini_base_url,
            openai_api_key=env.get("OPENAI_API_KEY") or None,
            openai_base_url=_url(env, "OPENAI_BASE_URL") or d.openai_base_url,
            youtube_api_key=env.get("YOUTUBE_API_KEY") or None,
            youtube_base_url=_url(env, "YOUTUBE_BASE_URL") or d.youtube_base_url,
            local_provider_delay_ms=_int(env, "LOCAL_PROVIDER_DELAY_MS", 0),
            rate_limits_file=_existing_file(env, "RATE_LIMITS"),
            storage_backend=storage,
            supabase_url=supabase_url,
            supabase_service_role_key=supabase_key,
            trusted_proxies=_networks(env, "TRUSTED_PROXIES"),
            public_base_url=_url(env, "PUBLIC_BASE_URL"),
            allow_private_urls=_bool(env, "ALLOW_PRIVATE_URLS"),
            log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
            lease_ttl_s=_float(env, "LEASE_TTL_S", d.lease_ttl_s, minimum=1.0),
            sync_wait_s=_float(env, "SYNC_WAIT_S", d.sync_wait_s),
            shutdown_grace_s=_float(env, "SHUTDOWN_GRACE_S", d.shutdown_grace_s),
            heartbeat_s=_float(env, "HEARTBEAT_S", d.heartbeat_s, minimum=0.01, maximum=15.0),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", d.max_body_bytes, minimum=1024),
            provider_max_attempts=_int(env, "PROVIDER_MAX_ATTEMPTS", d.provider_max_attempts,
                                       minimum=3),
            provider_attempt_timeout_s=_float(env, "PROVIDER_ATTEMPT_TIMEOUT_S",
                                              d.provider_attempt_timeout_s, minimum=1),
            provider_max_time_s=_float(env, "PROVIDER_MAX_TIME_S", d.provider_max_time_s,
                                       minimum=1),
            heatmap_cache_s=_float(env, "HEATMAP_CACHE_S", d.heatmap_cache_s),
            video_analysis_cache_s=_float(env, "VIDEO_ANALYSIS_CACHE_S",
                                          d.video_analysis_cache_s),
            instance_id=env.get("INSTANCE_ID") or d.instance_id,
            allow_local_provider=_bool(env, "ALLOW_LOCAL_PROVIDER"),
        )
        _refuse_placeholders_for_real_users(settings)
        return settings


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables a `.env` file sets (python-dotenv's syntax: comments, quotes,
    `export `); nothing when there is no such file."""
    if not path.is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def _database_url(env: Mapping[str, str], data_dir: Path) -> str:
    url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'viewbait.db'}"
    try:
        backend = sa.make_url(url).get_backend_name()
    except sa.exc.ArgumentError as exc:
        raise SettingsError(f"DATABASE_URL is not a database URL: {exc}") from None
    if backend not in ("postgresql", "sqlite"):
        raise SettingsError("DATABASE_URL must be postgresql+asyncpg://… or sqlite+aiosqlite:///…")
    if backend == "postgresql" and sa.make_url(url).port == TRANSACTION_POOLER_PORT:
        raise SettingsError(
            f"DATABASE_URL uses port {TRANSACTION_POOLER_PORT}, Supabase's transaction-mode "
            f"pooler. {POOLER_ADVICE}"
        )
    return url


#: Why the service refuses Supabase's transaction pooler, and what to use instead.
POOLER_ADVICE = (
    "The transaction-mode pooler breaks LISTEN/NOTIFY and prepared statements: use the "
    "session-mode pooler (the same pooler host on port 5432: postgresql+asyncpg://"
    "postgres.<project-ref>:<password>@aws-0-<region>.pooler.supabase.com:5432/postgres) "
    "or the direct connection (postgresql+asyncpg://postgres:<password>@"
    "db.<project-ref>.supabase.co:5432/postgres)"
)


def _database_schema(env: Mapping[str, str], database_url: str, backend: str) -> str:
    """DATABASE_SCHEMA: `viewbait_ai` by default with ViewBait's books (whose own tables
    are in `public`), else `public`; only PostgreSQL has schemas."""
    is_pg = sa.make_url(database_url).get_backend_name() == "postgresql"
    if backend == "viewbait" and not is_pg:
        raise SettingsError(
            "ACCOUNTS_BACKEND=viewbait needs PostgreSQL (ViewBait's Supabase database) in "
            "DATABASE_URL: postgresql+asyncpg://…; SQLite has no ViewBait tables"
        )
    default = "viewbait_ai" if backend == "viewbait" else "public"
    schema = (env.get("DATABASE_SCHEMA") or "").strip() or default
    if not _SCHEMA_NAME.fullmatch(schema):
        raise SettingsError(
            f"DATABASE_SCHEMA must be a lower-case PostgreSQL name (letters, digits, _), "
            f"got {schema!r}"
        )
    if backend == "viewbait" and schema == "public":
        raise SettingsError(
            "DATABASE_SCHEMA must not be public with ACCOUNTS_BACKEND=viewbait: public holds "
            "ViewBait's own tables (its thumbnails among them); use e.g. viewbait_ai"
        )
    if not is_pg and schema != "public":
        raise SettingsError("DATABASE_SCHEMA needs PostgreSQL; SQLite has no schemas")
    return schema


def _redis_url(env: Mapping[str, str]) -> str | None:
    url = (env.get("REDIS_URL") or "").strip() or None
    if url is not None and url.startswith("memory://"):
        raise SettingsError("REDIS_URL must be a Redis URL; leave it unset for memory://")
    try:
        ratelimit.check_url(url)
    except ratelimit.RateLimitConfigError as exc:
        raise SettingsError(f"REDIS_URL: {exc}") from None
    return url


def _providers(env: Mapping[str, str]) -> tuple[str, ...]:
    providers = tuple(
        p.strip() for p in (env.get("IMAGE_PROVIDERS") or "local").split(",") if p.strip()
    )
    unknown = [p for p in providers if p not in PROVIDERS]
    if not providers or unknown:
        raise SettingsError(
            f"IMAGE_PROVIDERS must list some of {', '.join(PROVIDERS)}; got {unknown or '[]'}"
        )
    for name in providers:
        key = f"{name.upper()}_API_KEY"
        if name != "local" and not env.get(key):
            raise SettingsError(f"IMAGE_PROVIDERS lists {name} but {key} is not set")
    return providers


def _storage(env: Mapping[str, str]) -> tuple[str, str | None, str | None]:
    """STORAGE_BACKEND, and Supabase's URL and key (both needed for `supabase`)."""
    storage = _choice(env, "STORAGE_BACKEND", ("local", "supabase"))
    supabase_url = _url(env, "SUPABASE_URL")
    supabase_key = env.get("SUPABASE_SERVICE_ROLE_KEY") or None
    if storage == "supabase" and not (supabase_url and supabase_key):
        raise SettingsError(
            "STORAGE_BACKEND=supabase needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"
        )
    return storage, supabase_url, supabase_key


def _refuse_placeholders_for_real_users(settings: Settings) -> None:
    """Real tokens and the offline provider: users would pay for placeholder images."""
    if (not settings.is_dev_auth and "local" in settings.image_providers
            and not settings.allow_local_provider):
        raise SettingsError(
            "IMAGE_PROVIDERS includes local, whose images are offline placeholders, while "
            "tokens are real (AUTH_JWT_SECRET or AUTH_JWKS_URL): users would be charged "
            "credits for them. Set IMAGE_PROVIDERS=gemini and/or openai, or "
            "ALLOW_LOCAL_PROVIDER=true for a demo"
        )


def _existing_file(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name) or None
    if raw is not None and not Path(raw).is_file():
        raise SettingsError(f"{name}: no such file {raw!r}")
    return None if raw is None else Path(raw)


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """An HMAC secret: at least 32 bytes, as HS256 wants."""
    secret = env.get(name) or None
    if secret is not None and len(secret.encode()) < 32:
        raise SettingsError(f"{name} must be at least 32 bytes (HS256)")
    return secret


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in (env.get(name) or "").split(",") if item.strip())


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Browser origins: `scheme://host[:port]`, nothing more (a browser sends exactly
    that in `Origin`)."""
    origins = []
    for origin in _list(env, name):
        parts = urlsplit(origin)
        if (parts.scheme not in ("http", "https") or not parts.hostname or parts.path
                or parts.query or parts.fragment or parts.username):
            raise SettingsError(f"{name}: {origin!r} is not an origin (scheme://host[:port])")
        origins.append(origin)
    return tuple(origins)


def _networks(env: Mapping[str, str], name: str) -> tuple[IPNetwork, ...]:
    networks = []
    for cidr in (env.get(name) or "").replace(" ", ",").split(","):
        if cidr:
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise SettingsError(f"{name}: {cidr!r} is not a CIDR") from None
    return tuple(networks)
