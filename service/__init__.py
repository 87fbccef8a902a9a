"""The ViewBait AI service: Starlette app, settings and command line."""

from ._app import create_app
from ._migrate import migrate
from ._settings import Settings, SettingsError

__all__ = ["Settings", "SettingsError", "create_app", "migrate"]
