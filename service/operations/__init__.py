"""The operations: their manager (runs owned by the process, streams of their event logs),
the four kinds as plans of steps, thumbnails, and accounts with their credits and tiers."""

from ._accounts import (
    EDIT_CREDITS,
    RESOLUTION_CREDITS,
    TIERS,
    Account,
    Accounts,
    Tier,
    check_generation_allowed,
)
from ._edit import EditKind
from ._generate import GenerateKind, generation_cost
from ._heatmap import HeatmapKind, upload_key
from ._kinds import ROUTE_OF_KIND, OperationKind, ProviderCalls
from ._manager import Operations
from ._slots import held
from ._tables import metadata
from ._thumbnails import Thumbnail, load_thumbnail
from ._video import VideoKind

__all__ = [
    "EDIT_CREDITS",
    "RESOLUTION_CREDITS",
    "ROUTE_OF_KIND",
    "TIERS",
    "Account",
    "Accounts",
    "EditKind",
    "GenerateKind",
    "HeatmapKind",
    "OperationKind",
    "Operations",
    "ProviderCalls",
    "Thumbnail",
    "Tier",
    "VideoKind",
    "check_generation_allowed",
    "generation_cost",
    "held",
    "load_thumbnail",
    "metadata",
    "upload_key",
]
