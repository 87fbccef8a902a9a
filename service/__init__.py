"""The ViewBait AI service: Starlette app, settings and command line."""

from ._app import create_app
from ._errors import ServiceError, SettingsError
from ._migrate import migrate
from ._settings import Settings

__all__ = ["ServiceError", "Settings", "SettingsError", "create_app", "migrate"]
