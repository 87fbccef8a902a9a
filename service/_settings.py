"""Settings, read once from the environment (and `.env`) into a frozen value."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa


class SettingsError(ValueError):
    """A setting has a wrong value; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: the process environment over `.env`)."""
        if env is None:
            env = {**read_dotenv(Path(".env")), **os.environ}
        data_dir = Path(env.get("DATA_DIR") or "./.viewbait")
        database_url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{data_dir / 'viewbait.db'}"
        try:
            backend = sa.make_url(database_url).get_backend_name()
        except sa.exc.ArgumentError as exc:
            raise SettingsError(f"DATABASE_URL is not a database URL: {exc}") from None
        if backend not in ("postgresql", "sqlite"):
            raise SettingsError(
                "DATABASE_URL must be postgresql+asyncpg://… or sqlite+aiosqlite:///…"
            )
        return cls(data_dir=data_dir, database_url=database_url)


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=value` lines of a `.env` file; comments, blanks and `export ` are allowed."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
