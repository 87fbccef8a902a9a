"""The operations: their manager (runs owned by the process, streams of their event logs)
and the four kinds as plans of steps, which charge and record through the books
(`service.accounts`)."""

from ._edit import EditKind
from ._generate import GenerateKind, generation_cost
from ._heatmap import HeatmapKind, upload_key
from ._kinds import ROUTE_OF_KIND, OperationKind, ProviderCalls
from ._manager import Ended, Operations
from ._slots import held
from ._tables import metadata
from ._video import VideoKind

__all__ = [
    "ROUTE_OF_KIND",
    "EditKind",
    "Ended",
    "GenerateKind",
    "HeatmapKind",
    "OperationKind",
    "Operations",
    "ProviderCalls",
    "VideoKind",
    "generation_cost",
    "held",
    "metadata",
    "upload_key",
]
