"""Settings are checked when they are read: a wrong value fails at start-up, naming it."""

from __future__ import annotations

import re

import pytest

from service import Settings, SettingsError

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:6379", "must be redis://"),
        ("memory://", "leave it unset"),
        ("redis://127.0.0.1:6379/0?socket_timeout=5", "unsupported option"),
        ("redis://127.0.0.1:6379/first", "must be a number"),
    ],
)
def test_bad_redis_url_names_the_setting(url: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"REDIS_URL.*{message}"):
        Settings.from_env({"REDIS_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://:pw@cache.example:6380/2?ssl_cert_reqs=none",
        "unix:///run/redis.sock?db=1",
        "redis+cluster://node-1:6379",
    ],
)
def test_redis_urls_of_every_kind_are_accepted(url: str) -> None:
    assert Settings.from_env({"REDIS_URL": url}).redis_url == url


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a database URL"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must be postgresql"),
        ({"IMAGE_PROVIDERS": "local,midjourney"}, "IMAGE_PROVIDERS must list"),
        ({"IMAGE_PROVIDERS": " , "}, "IMAGE_PROVIDERS must list"),
        ({"IMAGE_PROVIDERS": "gemini"}, "IMAGE_PROVIDERS lists gemini but GEMINI_API_KEY"),
        ({"IMAGE_PROVIDERS": "openai"}, "IMAGE_PROVIDERS lists openai but OPENAI_API_KEY"),
        ({"GEMINI_BASE_URL": "ftp://x"}, "GEMINI_BASE_URL must be an http"),
        ({"PUBLIC_BASE_URL": "example.com"}, "PUBLIC_BASE_URL must be an http"),
        ({"STORAGE_BACKEND": "s3"}, "STORAGE_BACKEND must be local or supabase"),
        ({"STORAGE_BACKEND": "supabase"}, "STORAGE_BACKEND=supabase needs SUPABASE_URL"),
        ({"STORAGE_BACKEND": "supabase", "SUPABASE_URL": "https://p.supabase.co"},
         "needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8, 300.1.1.1"}, "TRUSTED_PROXIES: '300.1.1.1'"),
        ({"RATE_LIMITS": "/nonexistent/limits.toml"}, "RATE_LIMITS: no such file"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be text or json"),
        ({"AUTH_JWT_SECRET": "short"}, "AUTH_JWT_SECRET must be at least 32 bytes"),
        ({"LEASE_TTL_S": "0.5"}, "LEASE_TTL_S must be at least 1.0"),
        ({"LEASE_TTL_S": "soon"}, "LEASE_TTL_S must be a number"),
        ({"SYNC_WAIT_S": "nan"}, "SYNC_WAIT_S must be a finite number"),
        ({"SHUTDOWN_GRACE_S": "-1"}, "SHUTDOWN_GRACE_S must be at least 0"),
        ({"HEARTBEAT_S": "30"}, "HEARTBEAT_S must be at most 15"),
        ({"HEARTBEAT_S": "0"}, "HEARTBEAT_S must be at least"),
        ({"MAX_BODY_BYTES": "100"}, "MAX_BODY_BYTES must be at least 1024"),
        ({"MAX_BODY_BYTES": "1e6"}, "MAX_BODY_BYTES must be an integer"),
        ({"LOCAL_PROVIDER_DELAY_MS": "-5"}, "LOCAL_PROVIDER_DELAY_MS must be at least 0"),
        ({"PROVIDER_MAX_ATTEMPTS": "2"}, "PROVIDER_MAX_ATTEMPTS must be at least 3"),
        ({"PROVIDER_ATTEMPT_TIMEOUT_S": "0"}, "PROVIDER_ATTEMPT_TIMEOUT_S must be at least 1"),
        ({"PROVIDER_MAX_TIME_S": "inf"}, "PROVIDER_MAX_TIME_S must be a finite number"),
        ({"HEATMAP_CACHE_S": "a day"}, "HEATMAP_CACHE_S must be a number"),
        ({"ALLOW_PRIVATE_URLS": "maybe"}, "ALLOW_PRIVATE_URLS must be true or false"),
        ({"ACCOUNTS_BACKEND": "stripe"}, "ACCOUNTS_BACKEND must be service or viewbait"),
        ({"ACCOUNTS_BACKEND": "viewbait"}, "ACCOUNTS_BACKEND=viewbait needs PostgreSQL"),
        ({"ACCOUNTS_BACKEND": "viewbait", "DATABASE_URL": PG, "DATABASE_SCHEMA": "public"},
         "DATABASE_SCHEMA must not be public with ACCOUNTS_BACKEND=viewbait"),
        ({"DATABASE_URL": PG, "DATABASE_SCHEMA": "Robert'); DROP"},
         "DATABASE_SCHEMA must be a lower-case PostgreSQL name"),
        ({"DATABASE_SCHEMA": "ai"}, "DATABASE_SCHEMA needs PostgreSQL"),
        ({"STRIPE_MODE": "sandbox"}, "STRIPE_MODE must be live or test"),
        ({"DATABASE_URL": "postgresql+asyncpg://postgres.ref:pw@aws-0-eu-west-1.pooler."
                          "supabase.com:6543/postgres"},
         "port 6543, Supabase's transaction-mode pooler. The transaction-mode pooler breaks "
         "LISTEN/NOTIFY and prepared statements: use the session-mode pooler"),
    ],
)
def test_every_wrong_value_is_refused_naming_its_setting(env, message) -> None:
    """Each setting's wrong value stops the start with a message that names it."""
    with pytest.raises(SettingsError, match=re.escape(message)):
        Settings.from_env(env)


def test_the_schema_of_the_services_tables_follows_the_books() -> None:
    """DATABASE_SCHEMA: `public` with the service's own books, `viewbait_ai` beside
    ViewBait's tables, or as set; STRIPE_MODE is `live` unless set."""
    assert Settings.from_env({"DATABASE_URL": PG}).database_schema == "public"
    viewbait = Settings.from_env({"DATABASE_URL": PG, "ACCOUNTS_BACKEND": "viewbait"})
    assert (viewbait.database_schema, viewbait.is_viewbait, viewbait.stripe_mode) == (
        "viewbait_ai", True, "live")
    assert Settings.from_env({"DATABASE_URL": PG, "ACCOUNTS_BACKEND": "viewbait",
                              "DATABASE_SCHEMA": "ai_ops", "STRIPE_MODE": "test"}
                             ).database_schema == "ai_ops"


def test_defaults_with_nothing_set() -> None:
    """An empty environment gives the embedded defaults: SQLite in DATA_DIR, the local
    provider, no Redis, dev-mode auth, 15 s heartbeats."""
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite+aiosqlite:///.viewbait/viewbait.db"
    assert settings.image_providers == ("local",)
    assert settings.redis_url is None
    assert settings.is_dev_auth
    assert settings.heartbeat_s == 15.0
    assert (settings.accounts_backend, settings.database_schema) == ("service", "public")


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path, monkeypatch) -> None:
    """`.env` in the working directory sets what the environment does not (quotes,
    comments and `export ` as python-dotenv reads them); the environment wins."""
    (tmp_path / ".env").write_text(
        "# deployment settings\n"
        "export LOG_FORMAT=json\n"
        "INSTANCE_ID='from-dotenv'  # a comment after the value\n"
        'PUBLIC_BASE_URL="https://ai.example.com"\n'
        "LEASE_TTL_S=30\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEASE_TTL_S", "45")
    monkeypatch.delenv("LOG_FORMAT", raising=False)
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    settings = Settings.from_env()
    assert settings.log_format == "json"
    assert settings.instance_id == "from-dotenv"
    assert settings.public_base_url == "https://ai.example.com"
    assert settings.lease_ttl_s == 45.0


def test_without_a_dotenv_file_only_the_environment_counts(tmp_path, monkeypatch) -> None:
    """No `.env`: nothing is read from files."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSTANCE_ID", "from-env")
    assert Settings.from_env().instance_id == "from-env"


@pytest.mark.parametrize(
    "auth",
    [{"AUTH_JWT_SECRET": "s" * 32}, {"AUTH_JWKS_URL": "https://issuer.test/jwks.json"},
     {"SUPABASE_URL": "https://project.supabase.co"}],
)
def test_the_offline_provider_is_refused_for_real_users(auth) -> None:
    """Real tokens with IMAGE_PROVIDERS containing local: refused at start (users would
    pay for placeholder images) unless ALLOW_LOCAL_PROVIDER=true says it is a demo."""
    with pytest.raises(SettingsError, match="ALLOW_LOCAL_PROVIDER=true"):
        Settings.from_env(auth)
    with pytest.raises(SettingsError, match="IMAGE_PROVIDERS includes local"):
        Settings.from_env({**auth, "IMAGE_PROVIDERS": "gemini,local", "GEMINI_API_KEY": "k"})
    assert Settings.from_env({**auth, "ALLOW_LOCAL_PROVIDER": "true"}).allow_local_provider
    real = Settings.from_env({**auth, "IMAGE_PROVIDERS": "gemini", "GEMINI_API_KEY": "k"})
    assert real.image_providers == ("gemini",)
    assert Settings.from_env({}).image_providers == ("local",)  # dev mode: allowed
