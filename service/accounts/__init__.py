"""The books: tiers, prices, credit balances and thumbnail rows, behind two small
protocols, kept either in the service's own tables or in ViewBait's Supabase tables
(`ACCOUNTS_BACKEND`)."""

from ._cache import TtlCache
from ._protocol import AccountsBackend, Charge, NewThumbnail, Thumbnail, ThumbnailRows
from ._service import Accounts, ServiceThumbnails
from ._tables import metadata
from ._tiers import (
    EDIT_CREDITS,
    RESOLUTION_CREDITS,
    TIERS,
    Account,
    Prices,
    Tier,
    check_generation_allowed,
)
from ._viewbait import CACHE_TTL_S, ViewBaitAccounts, check_viewbait_database, viewbait_user
from ._viewbait_thumbnails import ViewBaitThumbnails, image_key_of

__all__ = [
    "CACHE_TTL_S",
    "EDIT_CREDITS",
    "RESOLUTION_CREDITS",
    "TIERS",
    "Account",
    "Accounts",
    "AccountsBackend",
    "Charge",
    "NewThumbnail",
    "Prices",
    "ServiceThumbnails",
    "Thumbnail",
    "ThumbnailRows",
    "Tier",
    "TtlCache",
    "ViewBaitAccounts",
    "ViewBaitThumbnails",
    "check_generation_allowed",
    "check_viewbait_database",
    "image_key_of",
    "metadata",
    "viewbait_user",
]
